"""One object-store interface, two backends: a local folder (the embedded default) and S3/MinIO.

Objects are addressed by *keys* relative to a store root; the root has a URI, so every object has
one too: ``file:///srv/sgb/manifests/x.json`` or ``s3://bucket/prefix/manifests/x.json``.
Both backends stream (nothing forces a whole object into memory), hash what they write, and raise
the typed errors of :mod:`skingenbench.services.core.errors`: a missing object is :class:`NotFound`, a store
that cannot be reached is :class:`Unavailable`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast
from urllib.parse import unquote, urlparse

from skingenbench.services.core.errors import InvalidArgument, NotFound, Unavailable
from skingenbench.services.core.object_keys import validate_key, validate_prefix

_CHUNK = 1 << 20
_S3_PART_SIZE = 16 << 20


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str = ""


class _HashingReader:
    """Wraps a stream and hashes and counts what passes through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data


class ObjectStore(ABC):
    """The interface every service talks to. Implementations must be thread-safe."""

    root_uri: str

    # -- writing ---------------------------------------------------------------------------------
    @abstractmethod
    def put_stream(
        self, key: str, stream: BinaryIO, content_type: str = "application/octet-stream"
    ) -> ObjectInfo:
        """Write an object from a stream; readers never see a partial object."""

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> ObjectInfo:
        import io

        return self.put_stream(key, io.BytesIO(data), content_type)

    def put_file(
        self, key: str, path: str | os.PathLike, content_type: str = "application/octet-stream"
    ) -> ObjectInfo:
        with open(path, "rb") as handle:
            return self.put_stream(key, handle, content_type)

    # -- reading ---------------------------------------------------------------------------------
    @abstractmethod
    def open(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A context manager yielding a readable binary stream of the object."""

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    def get_file(self, key: str, path: str | os.PathLike) -> ObjectInfo:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with self.open(key) as stream, open(target, "wb") as out:
            reader = _HashingReader(stream)
            shutil.copyfileobj(reader, out, _CHUNK)
        return ObjectInfo(key, reader.size, reader.digest.hexdigest())

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size of an object (sha256 left empty: computing it means reading the object)."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under a prefix, recursively, in lexicographic order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete an object; deleting a missing object is not an error."""

    def ping(self) -> None:
        """A cheap check that the store answers (the servers' readiness probe); raises
        :class:`Unavailable` when it does not. One small request, never a listing or a read."""
        self.exists("health/ping")

    # -- addressing ------------------------------------------------------------------------------
    def uri(self, key: str) -> str:
        return f"{self.root_uri.rstrip('/')}/{validate_key(key)}"

    def key_from_uri(self, uri: str) -> str:
        """The key of a URI inside this store; a URI elsewhere is refused, a bare key passes."""
        if "://" not in uri:
            return validate_key(uri)
        root = self.root_uri.rstrip("/") + "/"
        if not uri.startswith(root):
            raise InvalidArgument(
                f"URI {uri!r} is not inside this service's store {self.root_uri!r}",
                hint="services and the flow must share one object store; check SKINGENBENCH_STORE",
            )
        return validate_key(unquote(uri[len(root) :]))


class LocalFolderStore(ObjectStore):
    """Objects as files under a folder. Writes go to a temp file and are renamed into place."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(exist_ok=True)
        self.root_uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = self.root / validate_key(key)
        if key.split("/", 1)[0] == ".tmp":
            raise InvalidArgument("keys under '.tmp/' are reserved by the folder store", key=key)
        return path

    def put_stream(self, key, stream, content_type="application/octet-stream"):
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        reader = _HashingReader(stream)
        try:
            fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix=f"{uuid.uuid4().hex}.")
        except FileNotFoundError:  # the store's folder went away under it: the store is down
            raise Unavailable(
                f"store folder {self.root} is missing",
                hint="is the store volume mounted? check SKINGENBENCH_STORE",
            ) from None
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(reader, out, _CHUNK)
            os.replace(tmp_name, path)  # atomic on POSIX: readers see the old or the new object
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        return ObjectInfo(key, reader.size, reader.digest.hexdigest())

    @contextlib.contextmanager
    def open(self, key):
        path = self._path(key)
        try:
            handle = open(path, "rb")  # noqa: SIM115 (closed by the with below)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"object not found: {self.uri(key)}", key=key) from None
        with handle:
            yield handle

    def exists(self, key):
        return self._path(key).is_file()

    def stat(self, key):
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"object not found: {self.uri(key)}", key=key)
        return ObjectInfo(key, path.stat().st_size)

    def list(self, prefix=""):
        validate_prefix(prefix)
        # Walk only the deepest folder the prefix names, then filter by the rest of the prefix.
        base_dir = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base_dir if base_dir else self.root
        if not start.is_dir():
            return iter(())
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            if Path(dirpath) == self.root:
                dirnames[:] = [d for d in dirnames if d != ".tmp"]
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return iter(sorted(keys))

    def delete(self, key):
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def ping(self) -> None:
        # Writes go through .tmp: a store whose folder (or mount) is gone or read-only cannot take one.
        if not (self._tmp.is_dir() and os.access(self._tmp, os.W_OK | os.X_OK)):
            raise Unavailable(
                f"store folder {self.root} is missing or not writable",
                hint="is the store volume mounted? check SKINGENBENCH_STORE",
            )


class S3Store(ObjectStore):
    """S3 or MinIO through the ``minio`` client; an optional prefix scopes it inside a bucket."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        secure: bool = False,
        ca_bundle: str | None = None,
        create_bucket: bool = True,
        timeout_s: float = 10.0,
        retries: int = 2,
    ) -> None:
        import certifi  # noqa: F401  (a minio dependency; imported to fail early if missing)
        import urllib3
        from minio import Minio

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_key(self.prefix)
        self.root_uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        # Few, short retries: a store that is down must become UNAVAILABLE quickly, not hang a job.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_s, read=max(timeout_s, 60.0)),
            retries=urllib3.Retry(total=retries, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
            maxsize=16,
            cert_reqs="CERT_REQUIRED" if secure else "CERT_NONE",
            ca_certs=ca_bundle or (__import__("certifi").where() if secure else None),
        )
        self.client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )
        if create_bucket:
            with self._translate_errors(""):
                if not self.client.bucket_exists(bucket):
                    self.client.make_bucket(bucket)

    def _object_name(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _translate_errors(self, key: str):
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            yield
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound", "NoSuchBucket"):
                raise NotFound(
                    f"object not found: {self.uri(key) if key else self.root_uri}", key=key
                ) from None
            if exc.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise Unavailable(
                    f"object store refused access ({exc.code})",
                    hint="check SKINGENBENCH_S3_ACCESS_KEY / SKINGENBENCH_S3_SECRET_KEY",
                ) from exc
            raise
        except (Urllib3Error, ConnectionError, TimeoutError) as exc:
            raise Unavailable(
                f"object store at {self.client._base_url.host} is unreachable: {type(exc).__name__}",
                hint="is MinIO running? check SKINGENBENCH_S3_ENDPOINT",
            ) from exc

    def put_stream(self, key, stream, content_type="application/octet-stream"):
        reader = _HashingReader(stream)
        with self._translate_errors(key):
            # length=-1 + part_size: multipart upload, so the object never needs to fit in memory;
            # S3 makes the object visible only once the upload completes.
            self.client.put_object(
                # minio only calls read(), all _HashingReader has; its annotation asks for a BinaryIO.
                self.bucket,
                self._object_name(key),
                cast(BinaryIO, reader),
                length=-1,
                part_size=_S3_PART_SIZE,
                content_type=content_type,
            )
        return ObjectInfo(key, reader.size, reader.digest.hexdigest())

    @contextlib.contextmanager
    def open(self, key):
        with self._translate_errors(key):
            response = self.client.get_object(self.bucket, self._object_name(key))
        try:
            yield _ResponseStream(response, self, key)
        finally:
            response.close()
            response.release_conn()

    def exists(self, key):
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    def stat(self, key):
        with self._translate_errors(key):
            info = self.client.stat_object(self.bucket, self._object_name(key))
        return ObjectInfo(key, int(info.size or 0))

    def list(self, prefix=""):
        validate_prefix(prefix)
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._translate_errors(prefix):
            names = [
                obj.object_name for obj in self.client.list_objects(self.bucket, prefix=full, recursive=True)
            ]
        return iter(sorted(name[strip:] for name in names))

    def delete(self, key):
        with self._translate_errors(key):
            self.client.remove_object(self.bucket, self._object_name(key))

    def ping(self) -> None:
        # One HEAD of the bucket: answers whether the server is up, the credentials work and the bucket is there.
        with self._translate_errors(""):
            found = self.client.bucket_exists(self.bucket)
        if not found:
            raise Unavailable(
                f"bucket {self.bucket!r} does not exist on the object store",
                hint="was it deleted? the services create it on start",
            )


class _ResponseStream:
    """File-like view of a urllib3 response whose read errors become :class:`Unavailable`."""

    def __init__(self, response, store: S3Store, key: str) -> None:
        self._response = response
        self._store = store
        self._key = key

    def read(self, n: int = -1) -> bytes:
        with self._store._translate_errors(self._key):
            return self._response.read() if n is None or n < 0 else self._response.read(n)


# -- construction from configuration ----------------------------------------------------------------

DEFAULT_STORE_DIR = ".skingenbench/store"
DATA_DIR_ENV = "SKINGENBENCH_DATA_DIR"
CONTAINER_DATA_DIR = "data"  # /data: the volume path of the images (docker/Dockerfile)
# Files a container runtime leaves in the root of the file system it starts (Docker, Podman); a
# Kubernetes pod has the service host in its environment whatever its runtime.
_CONTAINER_MARKERS = (".dockerenv", "run/.containerenv")


def running_in_container(env: dict[str, str] | None = None, fs_root: str | os.PathLike = "/") -> bool:
    env = dict(os.environ if env is None else env)
    root = Path(fs_root)
    return bool(env.get("KUBERNETES_SERVICE_HOST")) or any((root / m).exists() for m in _CONTAINER_MARKERS)


def default_store_uri(env: dict[str, str] | None = None, fs_root: str | os.PathLike = "/") -> str:
    """The store used when ``SKINGENBENCH_STORE`` is not set, in this order:

    1. ``$SKINGENBENCH_DATA_DIR/store`` when that is set (the images set it to /data);
    2. ``/data/store`` in a container that has a /data folder (a volume mounted there, or the image's);
    3. ``.skingenbench/store`` under the working directory: a workstation's ``make run``, as always.

    The folder is not created here: the server's start-up checks it can write there, and says how to
    fix it when it cannot (``runtime_dirs.check_store_writable``).
    """
    env = dict(os.environ if env is None else env)
    if env.get("SKINGENBENCH_STORE"):
        return env["SKINGENBENCH_STORE"]
    if env.get(DATA_DIR_ENV):
        return (Path(env[DATA_DIR_ENV]).expanduser().absolute() / "store").as_uri()
    data = Path(fs_root).absolute() / CONTAINER_DATA_DIR
    if running_in_container(env, fs_root) and data.is_dir():
        return (data / "store").as_uri()
    return DEFAULT_STORE_DIR


def store_from_uri(uri: str | None = None, env: dict[str, str] | None = None) -> ObjectStore:
    """Open the store a URI names; settings for S3 come from the environment.

    ``file:///abs/path`` or a plain path → :class:`LocalFolderStore`;
    ``s3://bucket[/prefix]`` → :class:`S3Store` with ``SKINGENBENCH_S3_*`` settings.
    With no URI, ``SKINGENBENCH_STORE`` or the default folder (``default_store_uri``) is used.
    """
    env = dict(os.environ if env is None else env)
    uri = uri or default_store_uri(env)
    if "://" not in uri:
        return LocalFolderStore(uri)
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidArgument(f"file URI must name a local path: {uri!r}")
        return LocalFolderStore(unquote(parsed.path))
    if parsed.scheme == "s3":
        endpoint = env.get("SKINGENBENCH_S3_ENDPOINT", "")
        if not endpoint:
            raise InvalidArgument(
                "an s3:// store needs an endpoint",
                hint="set SKINGENBENCH_S3_ENDPOINT, e.g. http://minio:9000",
            )
        secure = endpoint.startswith("https://")
        if "SKINGENBENCH_S3_SECURE" in env:
            secure = env["SKINGENBENCH_S3_SECURE"].lower() in ("1", "true", "yes")
        host = endpoint.split("://", 1)[-1].rstrip("/")
        return S3Store(
            parsed.netloc,
            parsed.path.strip("/"),
            endpoint=host,
            access_key=env.get("SKINGENBENCH_S3_ACCESS_KEY"),
            secret_key=env.get("SKINGENBENCH_S3_SECRET_KEY"),
            region=env.get("SKINGENBENCH_S3_REGION", "us-east-1"),
            secure=secure,
            ca_bundle=env.get("SKINGENBENCH_S3_CA_BUNDLE") or None,
        )
    raise InvalidArgument(f"unsupported store URI scheme {parsed.scheme!r}", hint="use file:// or s3://")
