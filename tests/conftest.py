"""Shared fixtures: real object stores (a folder, and moto's S3 server over HTTP), free ports."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def data_read_root(tmp_path_factory):
    """Services read data folders only under their read roots (services/platform/readable.py). The tests'
    data folders live in pytest's temp tree, which is therefore this session's read root, as an operator's
    data volume would be; a path outside it (``/no/such/folder``, ``/etc``) stays refused."""
    root = tmp_path_factory.getbasetemp()
    before = os.environ.get("SKINGENBENCH_READ_ROOTS")
    os.environ["SKINGENBENCH_READ_ROOTS"] = str(root) + (f":{before}" if before else "")
    yield root
    if before is None:
        os.environ.pop("SKINGENBENCH_READ_ROOTS", None)
    else:
        os.environ["SKINGENBENCH_READ_ROOTS"] = before


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3 HTTP server (moto) on loopback, shared by the session; the minio client talks to it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()


def make_s3_store(endpoint: str, prefix: str = ""):
    from skingenbench.services.platform.store import S3Store

    return S3Store(
        f"sgb-{uuid.uuid4().hex[:12]}",
        prefix,
        endpoint=endpoint,
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
        secure=False,
    )


@pytest.fixture
def folder_store(tmp_path):
    from skingenbench.services.platform.store import LocalFolderStore

    return LocalFolderStore(tmp_path / "store")


@pytest.fixture
def s3_store(moto_endpoint):
    return make_s3_store(moto_endpoint)


@pytest.fixture(params=["folder", "s3"])
def store(request, tmp_path):
    """Each store contract test runs against both backends."""
    if request.param == "folder":
        from skingenbench.services.platform.store import LocalFolderStore

        return LocalFolderStore(tmp_path / "store")
    return make_s3_store(request.getfixturevalue("moto_endpoint"), prefix="scoped/root")
