"""The deploy check's pure parts, without Docker: how a rendered Kubernetes pod spec becomes `docker run`
arguments (bench/deploy/k8s_replay.py), Compose durations and Docker's timestamps (compose_stack.py).
The check itself runs in `make deploy-check`."""

from __future__ import annotations

import datetime as _dt
import shutil

import pytest

from bench.deploy.compose_stack import _parse_time, _seconds
from bench.deploy.k8s_replay import Replay, _quantity_bytes, _quantity_cpu

POD = {
    "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001, "runAsNonRoot": True},
    "containers": [
        {
            "name": "generation",
            "image": "skingenbench/generation:cpu",
            "args": ["serve", "generation"],
            "env": [
                {"name": "SKINGENBENCH_HOST", "value": "0.0.0.0"},
                {"name": "OMP_NUM_THREADS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {
                    "name": "SKINGENBENCH_STORE",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "skingenbench-store", "key": "SKINGENBENCH_STORE"}
                    },
                },
                {
                    "name": "SKINGENBENCH_AUTH_TOKEN",
                    "valueFrom": {
                        "secretKeyRef": {"name": "skingenbench-auth", "key": "SKINGENBENCH_AUTH_TOKEN"}
                    },
                },
            ],
            "ports": [{"containerPort": 50052, "name": "grpc"}],
            "resources": {"limits": {"cpu": "500m", "memory": "2Gi"}},
            "securityContext": {
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "weights", "mountPath": "/weights", "readOnly": True},
            ],
        }
    ],
}
DOCS = [
    {
        "kind": "ConfigMap",
        "metadata": {"name": "skingenbench-store"},
        "data": {"SKINGENBENCH_STORE": "s3://b"},
    }
]
SECRETS = {"skingenbench-auth": {"SKINGENBENCH_AUTH_TOKEN": "t0ken"}}


def _args(pod=POD, secrets=SECRETS) -> list[str]:
    replay = Replay(DOCS, secrets, {"skingenbench/generation:cpu": "skingenbench/generation:cuda"}, "s3")
    volumes = {"tmp": ["volume", "replay-g-tmp"], "weights": ["volume", "replay-g-weights"]}
    return replay._docker_args(pod, pod["containers"][0], volumes, "replay-g")


def _pairs(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_pod_hardening_becomes_docker_options():
    args = _args()
    assert _pairs(args, "--user") == ["10001:10001"] and _pairs(args, "--group-add") == ["10001"]
    assert "--read-only" in args and _pairs(args, "--cap-drop") == ["ALL"]
    assert _pairs(args, "--security-opt") == ["no-new-privileges"]
    assert _pairs(args, "--cpus") == ["0.5"] and _pairs(args, "--memory") == [str(2 * 2**30)]
    assert _pairs(args, "-p") == ["127.0.0.1::50052"]


def test_volumes_mount_where_the_pod_says_and_read_only_stays_read_only():
    mounts = _pairs(_args(), "--mount")
    assert "type=volume,source=replay-g-tmp,target=/tmp" in mounts
    assert "type=volume,source=replay-g-weights,target=/weights,readonly" in mounts


def test_env_resolves_values_references_and_resource_fields():
    env = dict(e.split("=", 1) for e in _pairs(_args(), "-e"))
    assert env == {
        "SKINGENBENCH_HOST": "0.0.0.0",
        "OMP_NUM_THREADS": "1",  # 500m rounds up to one CPU, as the kubelet does
        "SKINGENBENCH_STORE": "s3://b",
        "SKINGENBENCH_AUTH_TOKEN": "t0ken",
    }


def test_args_follow_the_mapped_image_and_keep_its_entrypoint():
    args = _args()
    image = args.index("skingenbench/generation:cuda")
    assert args[image + 1 :] == ["serve", "generation"] and "--entrypoint" not in args


def test_command_replaces_the_entrypoint():
    pod = {**POD, "containers": [{**POD["containers"][0], "command": ["sha256sum", "--check"], "args": []}]}
    args = _args(pod)
    assert _pairs(args, "--entrypoint") == ["sha256sum"] and args[-1] == "--check"


def test_a_missing_secret_key_stops_the_pod_like_the_kubelet():
    with pytest.raises(ValueError, match="skingenbench-auth has no key"):
        _args(secrets={})


def test_quantities_and_durations():
    assert _quantity_cpu("250m") == 0.25 and _quantity_cpu(2) == 2.0
    assert _quantity_bytes("16Gi") == 16 * 2**30 and _quantity_bytes("64Mi") == 64 * 2**20
    assert (
        _seconds("45s") == 45 and _seconds("1m30s") == 90 and _seconds("2m") == 120 and _seconds(None) == 10
    )
    assert _parse_time("2026-12-01T11:25:19.123456789Z") == _dt.datetime(
        2026, 12, 1, 11, 25, 19, 123456, tzinfo=_dt.timezone.utc
    )


def test_the_overlays_render_deployments_the_replay_can_translate():
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with kustomize) is not installed")
    from bench.deploy.k8s_replay import render
    from tests.deploy.test_dockerfile import ROOT

    docs = render(ROOT / "deploy/k8s/overlays/cpu")
    secrets = {
        "skingenbench-s3": {"SKINGENBENCH_S3_ACCESS_KEY": "a", "SKINGENBENCH_S3_SECRET_KEY": "b"},
        "skingenbench-auth": {"SKINGENBENCH_AUTH_TOKEN": "c"},
    }
    replay = Replay(docs, secrets, {}, "s3")
    assert {d["metadata"]["name"] for d in replay.deployments} >= {"preprocessing", "generation"}
    for deployment in replay.deployments:
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: ["volume", f"x-{v['name']}"] for v in pod.get("volumes", [])}
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            args = replay._docker_args(pod, container, volumes, "x")
            assert "--read-only" in args and "--user" in args, deployment["metadata"]["name"]
