"""moto's S3 server on a fixed port, so a test can stop it (an outage) and start it again where every client
expects it. moto keeps its buckets in process memory: what was stored before the stop is there after."""

from __future__ import annotations

from skingenbench.services.platform.store import S3Store

from tests.conftest import free_port


class StoppableS3:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self._server = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def store(self, bucket: str) -> S3Store:
        return S3Store(bucket, endpoint=self.endpoint, access_key="testing", secret_key="testing")

    def __enter__(self) -> StoppableS3:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
