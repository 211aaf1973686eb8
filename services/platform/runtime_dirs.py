"""Start-up checks of the folders a service writes: its folder store, the temp dir and the caches in HOME.

A container is where these break: a volume mounted at /data that uid 10001 cannot write, a read-only root
file system with nothing mounted at /tmp, a HOME that does not exist. Each is found here, before the
server serves, and said in one line with the fix. Found later, it was a job failing with "No usable
temporary directory" while health said SERVING, or ``PermissionError: '/.skingenbench'`` at the first
write (issue 15).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from skingenbench.services.core.errors import FailedPrecondition
from skingenbench.services.platform.store import (
    DATA_DIR_ENV,
    LocalFolderStore,
    ObjectStore,
    default_store_uri,
    store_from_uri,
)

log = logging.getLogger(__name__)


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else "this user"


def _mount_point(folder: Path, env: Mapping[str, str]) -> Path:
    """Where a volume should go for ``folder``: the data dir it lies under, else the folder itself."""
    data_dir = env.get(DATA_DIR_ENV)
    candidates = [Path(data_dir).expanduser().absolute()] if data_dir else []
    candidates.append(Path("/data"))
    for candidate in candidates:
        if folder == candidate or candidate in folder.parents:
            return candidate
    return folder


def _not_writable(folder: Path, exc: OSError, env: Mapping[str, str]) -> FailedPrecondition:
    mount = _mount_point(folder, env)
    where = f" at {exc.filename}" if exc.filename and Path(exc.filename) != folder else ""
    return FailedPrecondition(
        f"the store folder {folder} is not writable by uid {_uid()} ({exc.strerror or exc}{where}): "
        f"mount a volume writable by uid {_uid()} at {mount}",
        hint=f"e.g. docker run -v skingenbench-data:{mount}; a host folder needs chown {_uid()}; "
        "or set SKINGENBENCH_STORE to a writable folder or an s3:// store",
        folder=str(folder),
    )


def _folder_of(uri: str) -> Path | None:
    """The folder a folder-store URI or path names (None for other stores)."""
    if "://" not in uri:
        return Path(uri).expanduser().absolute()
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def open_store(uri: str | None, env: Mapping[str, str] | None = None) -> ObjectStore:
    """``store_from_uri``, with a folder store that cannot be created or written refused in one line."""
    env = dict(os.environ if env is None else env)
    uri = uri or default_store_uri(env)
    folder = _folder_of(uri)
    try:
        store = store_from_uri(uri, env)
    except OSError as exc:  # the folder (or a parent) cannot be created: permissions, a read-only root
        if folder is None:
            raise
        raise _not_writable(folder, exc, env) from None
    check_store_writable(store, env)
    return store


def check_store_writable(store: ObjectStore, env: Mapping[str, str] | None = None) -> None:
    """A folder store must take a file (an existing folder can be read-only, e.g. a root-owned bind
    mount); an S3 store is checked by the health probe (readiness.py), which retries."""
    if not isinstance(store, LocalFolderStore):
        return
    env = dict(os.environ if env is None else env)
    try:
        handle, name = tempfile.mkstemp(prefix="write-check-", dir=store.root / ".tmp")
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        raise _not_writable(store.root, exc, env) from None


def check_temp_dir() -> str:
    """The temp dir jobs will use (``tempfile.gettempdir``), checked by writing to it."""
    try:
        folder = tempfile.gettempdir()
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:  # FileNotFoundError "No usable temporary directory found in [...]" among them
        raise FailedPrecondition(
            f"no writable temporary directory (TMPDIR={os.environ.get('TMPDIR', '')!r}; "
            f"{type(exc).__name__}: {exc}): on a read-only root file system mount a tmpfs at /tmp",
            hint="Kubernetes: an emptyDir volume at /tmp; docker run --read-only --tmpfs /tmp; "
            "or set TMPDIR to a writable folder",
        ) from None
    return folder


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


# What libraries write under HOME when nothing else is set: caches (torch hub, Hugging Face, timm, pip),
# configuration (matplotlib). They honour these variables before HOME.
_HOME_REDIRECTS = {"XDG_CACHE_HOME": "cache", "XDG_CONFIG_HOME": "config", "MPLCONFIGDIR": "matplotlib"}


def redirect_caches_from_unwritable_home(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """When HOME is missing or not writable, point the unset cache and config variables at a writable
    folder (the temp dir) instead of letting a library fail on its first write there.

    HOME itself is left as it is: ``~/.cache/skingenbench/weights``, the default weights read root, may be
    a read-only volume mounted under it. ``env`` (default ``os.environ``) is updated in place; returns
    what was set."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    if _writable_dir(home):
        return {}
    base = Path(tempfile.gettempdir()) / f"skingenbench-home-{os.getuid() if hasattr(os, 'getuid') else 0}"
    changed = {}
    for name, sub in _HOME_REDIRECTS.items():
        if not env.get(name):
            folder = base / sub
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            env[name] = changed[name] = str(folder)
    if changed:
        log.info("HOME %s is not writable: caches and configuration go to %s", home, base)
    return changed


def prepare_runtime_dirs(store_uri: str | None, store: ObjectStore | None = None) -> ObjectStore:
    """Every check, in the order a failure is easiest to read: temp dir, HOME, store. Returns the store."""
    check_temp_dir()
    redirect_caches_from_unwritable_home()
    if store is None:
        return open_store(store_uri)
    check_store_writable(store)
    return store
