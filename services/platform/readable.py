"""What a server reads when a request names something: one rule for every service.

A request field that names something to read (weights, a checkpoint, a model folder, a data folder) is
either

- a **store object**: a key (``models/ddpm/…/model.json``), or an ``s3://`` or ``file://`` URI inside
  the service's configured store (``SKINGENBENCH_STORE``); or
- a **file or folder on the server's host under a read-only root**: ``$SKINGENBENCH_WEIGHTS_DIR``
  (default ``~/.cache/skingenbench/weights``, the folder the servers take their default weights from)
  and each entry of ``$SKINGENBENCH_READ_ROOTS`` (absolute paths, colon-separated like ``PATH``; e.g.
  the mount that holds HAM10000 and MILK10K). Given as an absolute path or a ``file://`` URI.

Anything else is INVALID_ARGUMENT, decided before anything outside the roots is opened or even
stat-ed, and the message is built from the request and the configuration only: the answer for
``/etc/passwd`` is the same whether or not the file exists, so the rule is no existence oracle, and
nothing outside the roots is ever hashed, so it is no hash oracle either (OWASP, "Path Traversal" /
CWE-22: canonicalise, then check containment). Symlinks and ``..`` are resolved (``os.path.realpath``)
before containment is checked, and the resolved path is what the caller reads, so a link inside a root
that points elsewhere is refused like the place it points to. The filesystem root itself is never a
read root. The environment is read on every call, so a server picks up its settings as they are when
a request arrives (and tests can set them per test).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.platform.store import ObjectStore

WEIGHTS_DIR_ENV = "SKINGENBENCH_WEIGHTS_DIR"
READ_ROOTS_ENV = "SKINGENBENCH_READ_ROOTS"
# The same default as the evaluation core's weights folder (services/evaluation/core/extractors.py), which
# the platform may not import: the folder a server reads its default weights from is a read root too.
DEFAULT_WEIGHTS_DIR = "~/.cache/skingenbench/weights"
_MAX_QUOTED = 200  # characters of a request's URI quoted back in an error


@dataclass(frozen=True)
class Readable:
    """Where a request's reference points: a store key, or a resolved path under a read root."""

    key: str = ""
    path: Path | None = None

    @property
    def is_local(self) -> bool:
        return self.path is not None


def _configured_roots(env: dict[str, str] | None) -> list[tuple[Path, Path]]:
    """(as configured, normalised; resolved) for each root: the weights folder, then the allow-list."""
    env = dict(os.environ if env is None else env)
    entries = [
        env.get(WEIGHTS_DIR_ENV) or DEFAULT_WEIGHTS_DIR,
        *env.get(READ_ROOTS_ENV, "").split(os.pathsep),
    ]
    roots: list[tuple[Path, Path]] = []
    for entry in (e.strip() for e in entries):
        path = Path(entry).expanduser() if entry else None
        if path is None or not path.is_absolute():
            continue  # a relative root would depend on the server's working directory
        configured, resolved = Path(os.path.normpath(path)), Path(os.path.realpath(path))
        if resolved != Path(resolved.anchor) and configured != Path(configured.anchor):
            roots.append((configured, resolved))
    return roots


def read_roots(env: dict[str, str] | None = None) -> tuple[Path, ...]:
    """The configured read-only roots, resolved: the weights folder, then ``$SKINGENBENCH_READ_ROOTS``."""
    return tuple(dict.fromkeys(resolved for _, resolved in _configured_roots(env)))


def _under_a_root(raw: str, env: dict[str, str] | None) -> Path | None:
    """The resolved path of ``raw`` when it lies under a read root, else None.

    Checked twice: the path normalised without touching the filesystem must lie under a root (so nothing
    outside the roots is ever looked up, not even a symlink on the way), and so must its real path (so a
    link inside a root that points out of it is refused too).
    """
    roots = _configured_roots(env)
    lexical = Path(os.path.normpath(raw))
    if not any(_inside(lexical, configured) or _inside(lexical, resolved) for configured, resolved in roots):
        return None
    path = Path(os.path.realpath(lexical))
    return path if any(_inside(path, resolved) for _, resolved in roots) else None


def _quoted(uri: str) -> str:
    return repr(uri if len(uri) <= _MAX_QUOTED else uri[:_MAX_QUOTED] + "…")


def _refused(uri: str, field: str, store: ObjectStore, roots: tuple[Path, ...]) -> InvalidArgument:
    """The one answer for a reference outside the store and the roots (the same whether it exists)."""
    where = ", ".join(str(r) for r in roots) or "none configured"
    return InvalidArgument(
        f"{field} {_quoted(uri)} is neither an object in this service's store nor a file under one of "
        "this server's read roots",
        hint=f"name an object in the store ({store.root_uri}) or a file under a read root ({where}); "
        f"the server's operator sets ${WEIGHTS_DIR_ENV} and ${READ_ROOTS_ENV} (colon-separated)",
        field=field,
    )


def _store_folder(store: ObjectStore) -> Path | None:
    """A folder store's root on this machine (None for S3): a path inside it names a store object."""
    parsed = urlparse(store.root_uri)
    return Path(os.path.realpath(unquote(parsed.path))) if parsed.scheme == "file" else None


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve(store: ObjectStore, uri: str, field: str, env: dict[str, str] | None = None) -> Readable:
    """Where ``uri`` (a request's ``field``) points, by the rule above; anything else is InvalidArgument.

    Nothing is opened: the caller checks that a store key exists (NOT_FOUND) or that a path under a root
    is the file or folder it needs; those answers may differ, as they only describe what the operator
    chose to expose.
    """
    if not uri:
        raise InvalidArgument(f"{field} is required", field=field)
    if "\x00" in uri:
        raise InvalidArgument(f"{field} contains a NUL byte", field=field)
    parsed = urlparse(uri) if "://" in uri else None
    if parsed is not None and parsed.scheme != "file":
        root = store.root_uri.rstrip("/") + "/"
        if not uri.startswith(root):
            raise _refused(uri, field, store, read_roots(env))
        return Readable(key=store.key_from_uri(uri))
    if parsed is None and not uri.startswith("/"):
        return Readable(key=store.key_from_uri(uri))  # a key (validated: relative, no '..' part)
    if parsed is not None and parsed.netloc not in ("", "localhost"):
        raise _refused(uri, field, store, read_roots(env))
    raw = unquote(parsed.path) if parsed is not None else uri
    store_folder = _store_folder(store)
    if store_folder is not None:
        lexical = Path(os.path.normpath(raw))
        if _inside(lexical, store_folder) and lexical != store_folder:
            real = Path(os.path.realpath(lexical))
            if _inside(real, store_folder) and real != store_folder:
                return Readable(key=store.key_from_uri(real.relative_to(store_folder).as_posix()))
            raw = str(real)  # a link inside the store that points out of it: the roots decide
    path = _under_a_root(raw, env)
    if path is None:
        raise _refused(uri, field, store, read_roots(env))
    return Readable(path=path)


def store_key(store: ObjectStore, uri: str, field: str, env: dict[str, str] | None = None) -> str:
    """The store key of a reference that must name a store object (a manifest, a result, a checkpoint)."""
    source = resolve(store, uri, field, env)
    if source.is_local:
        raise InvalidArgument(
            f"{field} must name an object in this service's store, not a file on the server",
            hint=f"store objects are keys or URIs under {store.root_uri}",
            field=field,
        )
    return source.key


def local_path(uri: str, field: str, env: dict[str, str] | None = None) -> Path:
    """A path on this machine that a request names and that must lie under a read root (no store
    involved: the data importer's source folder). The same refusal as ``resolve``."""
    if not uri:
        raise InvalidArgument(f"{field} is required", field=field)
    if "\x00" in uri:
        raise InvalidArgument(f"{field} contains a NUL byte", field=field)
    parsed = urlparse(uri) if "://" in uri else None
    where = ", ".join(str(r) for r in read_roots(env)) or "none configured"
    refusal = InvalidArgument(
        f"{field} {_quoted(uri)} is not under one of this server's read roots",
        hint=f"read roots: {where}; the server's operator sets ${READ_ROOTS_ENV} (colon-separated)",
        field=field,
    )
    if parsed is not None and (parsed.scheme != "file" or parsed.netloc not in ("", "localhost")):
        raise refusal
    raw = unquote(parsed.path) if parsed is not None else uri
    if not raw.startswith("/"):
        raise refusal
    path = _under_a_root(raw, env)
    if path is None:
        raise refusal
    return path
