"""A plain ``docker run`` of a service image: the default store under the volume path, and the start-up
checks (services/platform/runtime_dirs.py) that refuse an unwritable store or temp dir in one line,
before anything serves, and let a missing HOME pass.

The process tests run the real ``skingenbench serve``. Where the tests run as root, which writes anywhere,
the server runs as root without the capabilities that bypass file permissions (CAP_DAC_OVERRIDE, ...;
``setpriv``), and "a folder it cannot write" is one owned by uid 10001 with mode 0755; otherwise it is a
folder without write permission.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from skingenbench.services.core.errors import FailedPrecondition
from skingenbench.services.platform.runtime_dirs import (
    check_temp_dir,
    open_store,
    redirect_caches_from_unwritable_home,
)
from skingenbench.services.platform.settings import ServiceSettings
from skingenbench.services.platform.store import DEFAULT_STORE_DIR, default_store_uri
from skingenbench.services.stages import start_service

from tests.conftest import free_port

OTHER_UID = 10001
AS_ROOT = hasattr(os, "getuid") and os.getuid() == 0
# Root without the capabilities that override file permissions: permissions then apply to it too.
NO_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]
needs_setpriv = pytest.mark.skipif(
    AS_ROOT and shutil.which("setpriv") is None, reason="as root, needs setpriv(1) to drop CAP_DAC_OVERRIDE"
)


# -- the default store ----------------------------------------------------------------------------------
def test_default_store_follows_the_setting_then_the_data_dir_then_the_container_volume(tmp_path):
    fs_root = tmp_path / "root"
    fs_root.mkdir()
    # A workstation (no container marker): the working directory's folder, as `make run` always had.
    assert default_store_uri({}, fs_root) == DEFAULT_STORE_DIR
    (fs_root / "data").mkdir()
    assert default_store_uri({}, fs_root) == DEFAULT_STORE_DIR  # /data alone is not a container
    # In a container (Docker's marker, or a Kubernetes pod) with a /data folder: the volume path.
    (fs_root / ".dockerenv").touch()
    assert default_store_uri({}, fs_root) == (fs_root / "data" / "store").as_uri()
    (fs_root / ".dockerenv").unlink()
    assert (
        default_store_uri({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, fs_root)
        == (fs_root / "data" / "store").as_uri()
    )
    # SKINGENBENCH_DATA_DIR names the volume wherever it runs; SKINGENBENCH_STORE wins over everything.
    data = tmp_path / "vol"
    assert default_store_uri({"SKINGENBENCH_DATA_DIR": str(data)}, fs_root) == (data / "store").as_uri()
    assert default_store_uri({"SKINGENBENCH_DATA_DIR": str(data), "SKINGENBENCH_STORE": "s3://b"}) == "s3://b"


def test_a_container_without_a_data_folder_keeps_the_working_directory_default(tmp_path):
    fs_root = tmp_path / "root"
    (fs_root / "run").mkdir(parents=True)
    (fs_root / "run" / ".containerenv").touch()  # Podman's marker
    assert default_store_uri({}, fs_root) == DEFAULT_STORE_DIR


# -- HOME and the temp dir, in this process ------------------------------------------------------------
def test_a_missing_home_moves_the_caches_to_the_temp_dir_and_keeps_what_is_set(tmp_path):
    env = {"HOME": str(tmp_path / "no-such-home"), "XDG_CONFIG_HOME": str(tmp_path / "mine")}
    changed = redirect_caches_from_unwritable_home(env)
    assert set(changed) == {"XDG_CACHE_HOME", "MPLCONFIGDIR"}
    for name in changed:
        assert Path(env[name]).is_dir() and Path(env[name]).is_relative_to(tempfile.gettempdir())
    assert env["XDG_CONFIG_HOME"] == str(tmp_path / "mine")
    assert env["HOME"] == str(tmp_path / "no-such-home")  # HOME itself is left alone
    writable = {"HOME": str(tmp_path)}
    assert redirect_caches_from_unwritable_home(writable) == {} and writable == {"HOME": str(tmp_path)}


def test_an_unusable_temp_dir_stops_the_start_before_anything_listens(monkeypatch, folder_store):
    # What gettempdir answers when TMPDIR names a folder that is gone, as on a read-only root with an
    # emptyDir that was never mounted.
    monkeypatch.setattr(tempfile, "tempdir", "/no/such/tmp")
    with pytest.raises(FailedPrecondition, match="no writable temporary directory") as refused:
        check_temp_dir()
    assert "mount a tmpfs at /tmp" in str(refused.value) and "emptyDir" in refused.value.hint
    port = free_port()
    settings = ServiceSettings(stage="preprocessing", port=port)
    with pytest.raises(FailedPrecondition, match="no writable temporary directory"):
        start_service("preprocessing", settings, folder_store)
    with socket.socket() as probe:  # nothing was left listening on the port
        assert probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize(
    "refusal",
    [(PermissionError, errno.EACCES, "Permission denied"), (OSError, errno.EROFS, "Read-only file system")],
)
def test_open_store_names_the_folder_it_cannot_create(tmp_path, monkeypatch, refusal):
    error_type, code, text = refusal

    def refuse(*_args, **_kwargs):
        raise error_type(code, text, str(tmp_path / "data"))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(FailedPrecondition) as refused:
        open_store(None, {"SKINGENBENCH_DATA_DIR": str(tmp_path / "data")})
    message = str(refused.value)
    assert f"the store folder {tmp_path / 'data' / 'store'} is not writable by uid {os.getuid()}" in message
    assert f"mount a volume writable by uid {os.getuid()} at {tmp_path / 'data'}" in message
    assert text in message and "\n" not in message


# -- the real server process -----------------------------------------------------------------------------
SERVE = [sys.executable, "-m", "skingenbench.cli", "serve", "preprocessing"]


def _serve(env: dict[str, str], cwd: Path) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SKINGENBENCH_")}
    full = {**base, "SKINGENBENCH_HOST": "127.0.0.1", "SKINGENBENCH_PREPROCESSING_PORT": str(free_port())}
    full.update(env)
    return subprocess.Popen(
        (NO_DAC if AS_ROOT else []) + SERVE,
        cwd=cwd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _not_writable_for_the_service(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if AS_ROOT:
        os.chown(folder, OTHER_UID, OTHER_UID)  # another user's folder: root without DAC override can't write
        folder.chmod(0o755)
    else:
        folder.chmod(0o555)


@needs_setpriv
@pytest.mark.parametrize("layout", ["volume-not-writable", "store-exists-read-only"])
def test_an_unwritable_store_fails_at_start_up_with_one_line_naming_path_uid_and_fix(tmp_path, layout):
    data = tmp_path / "data"
    if layout == "volume-not-writable":
        _not_writable_for_the_service(data)  # a volume mounted at /data that the service cannot write
    else:
        (data / "store" / ".tmp").mkdir(parents=True)
        _not_writable_for_the_service(data / "store" / ".tmp")
        _not_writable_for_the_service(data / "store")
    uid = os.getuid()
    child = _serve({"SKINGENBENCH_DATA_DIR": str(data), "HOME": "/nonexistent"}, tmp_path)
    try:
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines[-1].startswith("error: "), err  # one line, no traceback
    assert lines[-1].startswith(f"error: the store folder {data / 'store'} is not writable by uid {uid}")
    assert f"mount a volume writable by uid {uid} at {data}" in lines[-1]
    assert "listening" not in out


@needs_setpriv
def test_a_missing_home_and_a_fresh_volume_serve(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    child = _serve({"SKINGENBENCH_DATA_DIR": str(data), "HOME": "/nonexistent"}, tmp_path)
    try:
        line = child.stdout.readline()  # "… listening on …" once it serves
        assert "listening on" in line, child.stderr.read() if child.poll() is not None else line
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert (data / "store").is_dir()
    assert "PermissionError" not in child.stderr.read()


@pytest.mark.skipif(
    not AS_ROOT or shutil.which("unshare") is None or shutil.which("setpriv") is None,
    reason="needs root, unshare(1) and setpriv(1)",
)
def test_a_read_only_root_without_a_tmp_mount_fails_at_start_up(tmp_path):
    """A read-only root file system: every temp candidate (/tmp, /var/tmp, /usr/tmp, the working
    directory) is read-only or unwritable in a private mount namespace, as with
    ``readOnlyRootFilesystem: true`` and no emptyDir at /tmp."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m is not permitted here: {probe.stderr.decode().strip()}")
    hidden = [Path(folder) for folder in ("/tmp", "/var/tmp", "/usr/tmp") if Path(folder).is_dir()]
    needed = [Path(sys.prefix).resolve(), Path(__file__).resolve().parents[2]]  # the venv and the checkout
    if any(path.is_relative_to(folder.resolve()) for path in needed for folder in hidden):
        pytest.skip("the interpreter or the checkout lives under a temp folder this test hides")
    # The working directory is gettempdir's last candidate: one the server cannot write, as / in an image.
    workdir = tmp_path / "workdir"
    _not_writable_for_the_service(workdir)
    mounts = " && ".join(
        f"mount -t tmpfs -o ro tmpfs {folder}"
        for folder in ("/tmp", "/var/tmp", "/usr/tmp")
        if Path(folder).is_dir()
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKINGENBENCH_")}
    env.update({"SKINGENBENCH_DATA_DIR": str(tmp_path), "SKINGENBENCH_PREPROCESSING_PORT": str(free_port())})
    env.pop("TMPDIR", None)
    # cd first: tmp_path is under /tmp, which the read-only mount then hides (the process keeps its cwd).
    script = f"cd {workdir} && {mounts} && exec {' '.join(NO_DAC + SERVE)}"
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr
    assert lines[-1].startswith("error: no writable temporary directory"), done.stderr
    assert "mount a tmpfs at /tmp" in lines[-1]
