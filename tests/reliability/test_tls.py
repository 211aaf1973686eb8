"""TLS over real channels to real servers, with certificates made in-process (a private CA, a server
certificate for 127.0.0.1 and localhost, a client certificate): who gets in and who does not, mutual
TLS, health over TLS, settings that must be refused before a server starts, and the clients (Python
client, flow wiring, CLI) that carry the settings."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from skingenbench.services.generation.client import GenerationClient
from skingenbench.services.platform.client import health_status, open_channel, watch_job
from skingenbench.services.platform.settings import SERVICES, ServiceSettings
from skingenbench.services.platform.tls import ClientTls, ServerTls, TlsConfigError, self_signed

from skingenbench.api.v1 import common_pb2, generation_pb2_grpc, preprocessing_pb2, preprocessing_pb2_grpc
from tests.common.service_helpers import running

pytest.importorskip("cryptography")
TOKEN = "s3cret-token"
PREPROCESSING = SERVICES["preprocessing"][0]
GENERATION = SERVICES["generation"][0]


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_kit(tmp_path_factory):
    """A second, unrelated CA (and certificates it signed)."""
    return self_signed(tmp_path_factory.mktemp("other-tls"))


def _tls_settings(server: ServerTls) -> dict[str, str]:
    return {"tls_cert": server.cert, "tls_key": server.key, "tls_client_ca": server.client_ca}


def _refused(channel: grpc.Channel) -> grpc.RpcError:
    """The error of a call that cannot get through (the TLS handshake fails: UNAVAILABLE)."""
    with pytest.raises(grpc.RpcError) as refused:
        preprocessing_pb2_grpc.PreprocessingStub(channel).GetServiceInfo(
            common_pb2.GetServiceInfoRequest(), timeout=5
        )
    return refused.value


def test_a_tls_service_with_a_token_answers_only_clients_that_trust_its_ca(kit, other_kit, folder_store):
    with running("preprocessing", folder_store, auth_token=TOKEN, **_tls_settings(kit.server())) as svc:
        with open_channel(svc.target, TOKEN, tls=kit.client()) as channel:
            stub = preprocessing_pb2_grpc.PreprocessingStub(channel)
            info = stub.GetServiceInfo(common_pb2.GetServiceInfoRequest(), timeout=10)
            assert info.service == PREPROCESSING  # answered over TLS
            assert stub.ListPipelines(common_pb2.ListRegistryRequest(), timeout=10).entries
            job = stub.StartImport(
                preprocessing_pb2.ImportRequest(
                    source="phantom", options_json=json.dumps({"count": 6, "width": 64, "height": 48}), seed=1
                ),
                timeout=10,
            )
            final = watch_job(channel, job.job_id, timeout_s=120)
            assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error.message
            assert json.loads(final.result_json)["item_count"] == 6
        # The name in the certificate is checked: localhost is in its subjectAltName too.
        with open_channel(f"localhost:{svc.port}", TOKEN, tls=kit.client()) as by_name:
            preprocessing_pb2_grpc.PreprocessingStub(by_name).ListPipelines(
                common_pb2.ListRegistryRequest(), timeout=10
            )
        # TLS does not replace the token: a trusted channel without it is refused by the auth interceptor.
        with open_channel(svc.target, "", tls=kit.client()) as anonymous:
            assert _refused(anonymous).code() == grpc.StatusCode.UNAUTHENTICATED
        # No plaintext port is open: an insecure client (with the right token) gets nowhere.
        with open_channel(svc.target, TOKEN, tls=ClientTls()) as insecure:
            assert _refused(insecure).code() == grpc.StatusCode.UNAVAILABLE
        # A client trusting another CA does not accept the server's certificate.
        with open_channel(svc.target, TOKEN, tls=other_kit.client()) as stranger:
            assert _refused(stranger).code() == grpc.StatusCode.UNAVAILABLE
        # Health (open without a token, as before) works over TLS, and only over TLS.
        assert health_status(svc.target, PREPROCESSING, tls=kit.client()) == "SERVING"
        assert health_status(svc.target, PREPROCESSING, tls=ClientTls()) == "UNREACHABLE"
        assert health_status(svc.target, PREPROCESSING, tls=other_kit.client()) == "UNREACHABLE"


def test_clients_read_the_ca_from_the_environment(kit, folder_store, monkeypatch):
    """The stack's probes (``skingenbench up/status``) and default clients take SKINGENBENCH_TLS_CA."""
    with running("preprocessing", folder_store, **_tls_settings(kit.server())) as svc:
        assert health_status(svc.target, PREPROCESSING) == "UNREACHABLE"
        monkeypatch.setenv("SKINGENBENCH_TLS_CA", str(kit.ca))
        assert health_status(svc.target, PREPROCESSING) == "SERVING"
        with open_channel(svc.target) as channel:
            preprocessing_pb2_grpc.PreprocessingStub(channel).ListPipelines(
                common_pb2.ListRegistryRequest(), timeout=10
            )


def test_the_certificate_must_name_the_server(tmp_path, kit, folder_store):
    elsewhere = self_signed(tmp_path / "elsewhere", hosts=("skingenbench.example",))
    with running("preprocessing", folder_store, **_tls_settings(elsewhere.server())) as svc:
        with open_channel(svc.target, "", tls=elsewhere.client()) as wrong_name:
            assert _refused(wrong_name).code() == grpc.StatusCode.UNAVAILABLE
        named = ClientTls(str(elsewhere.ca), server_name="skingenbench.example")
        assert health_status(svc.target, PREPROCESSING, tls=named) == "SERVING"


def test_mutual_tls_requires_a_client_certificate_signed_by_the_client_ca(kit, other_kit, folder_store):
    settings = _tls_settings(kit.server(client_ca=True))
    with running("generation", folder_store, auth_token=TOKEN, **settings) as svc:
        with GenerationClient(svc.target, TOKEN, tls=kit.client(with_cert=True), timeout_s=10) as client:
            assert {entry.name for entry in client.generators()} >= {"ddpm"}
            assert client.list_models() == []
        for tls in (
            kit.client(),
            ClientTls(str(kit.ca), str(other_kit.client_cert), str(other_kit.client_key)),
        ):
            with open_channel(svc.target, TOKEN, tls=tls) as channel, pytest.raises(grpc.RpcError) as refused:
                generation_pb2_grpc.GenerationStub(channel).ListModels(
                    common_pb2.ListRegistryRequest(), timeout=5
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert health_status(svc.target, GENERATION, tls=kit.client(with_cert=True)) == "SERVING"
        assert health_status(svc.target, GENERATION, tls=kit.client()) == "UNREACHABLE"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_health_port_answers_plaintext_health_and_nothing_else(kit, folder_store):
    """For probes that speak no TLS (the kubelet's gRPC probe): grpc.health.v1 only, on its own port."""
    health_port = _free_port()
    with running(
        "preprocessing", folder_store, health_port=health_port, **_tls_settings(kit.server())
    ) as svc:
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as plain:
            reply = health_pb2_grpc.HealthStub(plain).Check(
                health_pb2.HealthCheckRequest(service=PREPROCESSING), timeout=5
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as other:
                preprocessing_pb2_grpc.PreprocessingStub(plain).GetServiceInfo(
                    common_pb2.GetServiceInfoRequest(), timeout=5
                )
            assert other.value.code() == grpc.StatusCode.UNIMPLEMENTED
        svc.health.enter_graceful_shutdown()  # a drain shows on the health port too (one servicer)
        assert health_status(f"127.0.0.1:{health_port}", PREPROCESSING, tls=ClientTls()) == "NOT_SERVING"


def test_half_configured_or_unreadable_tls_is_refused_before_a_server_starts(
    kit, other_kit, tmp_path, folder_store
):
    not_pem = tmp_path / "not-a-cert.pem"
    not_pem.write_text("root:x:0:0:secret-looking-content\n")
    cases = [
        (ServerTls(cert=str(kit.server_cert)), "SKINGENBENCH_TLS_KEY is not"),
        (ServerTls(key=str(kit.server_key)), "SKINGENBENCH_TLS_CERT is not"),
        (ServerTls(client_ca=str(kit.ca)), "mutual TLS needs"),
        (ServerTls(str(tmp_path / "missing.pem"), str(kit.server_key)), "missing.pem: cannot read"),
        (ServerTls(str(not_pem), str(kit.server_key)), "holds no PEM certificate"),
        (ServerTls(str(kit.server_cert), str(kit.server_cert)), "holds no PEM private key"),
        (ServerTls(str(kit.server_cert), str(kit.server_key), str(not_pem)), "SKINGENBENCH_TLS_CLIENT_CA="),
        (ServerTls(str(kit.server_cert), str(other_kit.server_key)), "do not make a usable key pair"),
    ]
    for server, message in cases:
        with (
            pytest.raises(TlsConfigError) as refused,
            running("preprocessing", folder_store, **_tls_settings(server)),
        ):
            pass
        assert message in str(refused.value)
        assert "secret-looking" not in str(refused.value)  # a file's contents are never quoted
    for client, message in [
        (ClientTls(cert=str(kit.client_cert), key=str(kit.client_key)), "SKINGENBENCH_TLS_CA is not"),
        (ClientTls(str(kit.ca), cert=str(kit.client_cert)), "SKINGENBENCH_TLS_CLIENT_KEY is not"),
        (ClientTls(str(tmp_path / "missing-ca.pem")), "missing-ca.pem: cannot read"),
    ]:
        with pytest.raises(TlsConfigError, match=message):
            open_channel("127.0.0.1:1", "", tls=client)


def test_serve_refuses_to_start_with_a_message_when_only_the_certificate_is_set(kit, tmp_path):
    env = {
        **os.environ,
        "SKINGENBENCH_STORE": (tmp_path / "store").as_uri(),
        "SKINGENBENCH_PREPROCESSING_PORT": str(_free_port()),
        "SKINGENBENCH_TLS_CERT": str(kit.server_cert),
    }
    env.pop("SKINGENBENCH_TLS_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", "skingenbench.cli", "serve", "preprocessing"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "SKINGENBENCH_TLS_CERT is set but SKINGENBENCH_TLS_KEY is not" in done.stderr
    assert "Traceback" not in done.stderr


def test_settings_read_tls_from_the_environment(kit):
    env = {
        "SKINGENBENCH_TLS_CERT": str(kit.server_cert),
        "SKINGENBENCH_TLS_KEY": str(kit.server_key),
        "SKINGENBENCH_GENERATION_TLS_CLIENT_CA": str(kit.ca),
        "SKINGENBENCH_HEALTH_PORT": "8081",
    }
    generation = ServiceSettings.from_env("generation", env)
    assert generation.tls == ServerTls(str(kit.server_cert), str(kit.server_key), str(kit.ca))
    assert generation.health_port == 8081
    assert ServiceSettings.from_env("evaluation", env).tls.client_ca == ""  # a per-stage setting
    assert ServiceSettings.from_env("evaluation", {}).tls.enabled is False
    client = ClientTls.resolve(env={"SKINGENBENCH_TLS_CA": "ca.pem", "SKINGENBENCH_TLS_CLIENT_CERT": "c.pem"})
    assert client == ClientTls("ca.pem", "c.pem")
    assert ClientTls.resolve(ca="mine.pem", env={"SKINGENBENCH_TLS_CA": "ca.pem"}).ca == "mine.pem"


def test_the_flow_wiring_carries_the_tls_settings_to_its_endpoint_pools(kit, folder_store):
    from skingenbench.flows.benchmark import benchmark
    from skingenbench.flows.wiring import Wiring

    with running("preprocessing", folder_store, auth_token=TOKEN, **_tls_settings(kit.server())) as svc:
        env = {"SKINGENBENCH_AUTH_TOKEN": TOKEN, "SKINGENBENCH_TLS_CA": str(kit.ca)}
        wiring = Wiring.from_settings(env, endpoints={"preprocessing": svc.target}, store_uri="file:///tmp/s")
        assert wiring.tls == kit.client()
        assert Wiring.from_settings({}, store_uri="file:///tmp/s").tls == ClientTls()
        # Stored as a Prefect parameter (paths only, nothing secret) and read back as the same value.
        validated = benchmark.validate_parameters({"wiring": wiring})["wiring"]
        stored = benchmark.serialize_parameters({"wiring": validated})["wiring"]
        assert stored["tls"]["ca"] == str(kit.ca)
        assert benchmark.validate_parameters({"wiring": {**stored, "auth_token": TOKEN}})["wiring"] == wiring
        pools = wiring.pools()
        try:
            info = pools["preprocessing"].run(
                lambda channel: preprocessing_pb2_grpc.PreprocessingStub(channel).GetServiceInfo(
                    common_pb2.GetServiceInfoRequest(), timeout=10
                )
            )
            assert info is not None
        finally:
            for pool in pools.values():
                pool.close()


def test_the_cli_takes_tls_options(kit, folder_store, capsys):
    from skingenbench.cli import main

    with running("generation", folder_store, auth_token=TOKEN, **_tls_settings(kit.server())) as svc:
        base = ["generate", "--list-models", "--target", svc.target, "--token", TOKEN]
        assert main([*base, "--tls-ca", str(kit.ca)]) == 0
        assert "no trained models" in capsys.readouterr().out
        assert main(base + ["--tls-ca", str(kit.ca), "--tls-cert", str(kit.client_cert)]) == 2
        assert "SKINGENBENCH_TLS_CLIENT_KEY is not" in capsys.readouterr().err


def test_endpoints_resolved_from_a_dns_name_check_the_certificate_against_that_name(tmp_path, folder_store):
    """``dns:///name:port`` expands to addresses (pod IPs are in no certificate): each endpoint's server
    certificate is checked against the DNS name it came from."""
    from skingenbench.flows.endpoints import EndpointPool, parse_endpoints

    named = self_signed(tmp_path / "named", hosts=("localhost",))  # no IP address in the certificate
    with running("preprocessing", folder_store, **_tls_settings(named.server())) as svc:
        endpoints = [
            e for e in parse_endpoints(f"dns:///localhost:{svc.port}") if e.target.startswith("127.")
        ]
        assert endpoints and endpoints[0].server_name == "localhost"
        pool = EndpointPool("preprocessing", endpoints, token="", tls=named.client())
        try:
            info = preprocessing_pb2_grpc.PreprocessingStub(pool.channel(endpoints[0])).GetServiceInfo(
                common_pb2.GetServiceInfoRequest(), timeout=10
            )
            assert info.service == PREPROCESSING
        finally:
            pool.close()
        # The same address given as an IP is checked against the IP, which the certificate does not name.
        with open_channel(svc.target, "", tls=named.client()) as by_address:
            assert _refused(by_address).code() == grpc.StatusCode.UNAVAILABLE


def test_a_deployment_that_requires_a_token_refuses_to_start_without_one(folder_store):
    from skingenbench.services.core.errors import FailedPrecondition

    with (
        pytest.raises(FailedPrecondition, match="SKINGENBENCH_AUTH_TOKEN is empty"),
        running("preprocessing", folder_store, require_token=True),
    ):
        pass
    assert ServiceSettings.from_env("generation", {"SKINGENBENCH_REQUIRE_TOKEN": "1"}).require_token
    with running("preprocessing", folder_store, require_token=True, auth_token=TOKEN) as svc:
        assert health_status(svc.target, PREPROCESSING, tls=ClientTls()) == "SERVING"
