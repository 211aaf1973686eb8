"""``make deploy-check``: the deployment files built and run, not only validated (issue 15).

1. an engine (``DOCKER_HOST``, or the private daemon of ../shared/tools/containers, started and stopped);
2. the five images from docker/Dockerfile: size and build time each (and, where asked, the CPU
   generation image's size with another torch pair, ``--cpu-size-probe``);
3. the images' entrypoint runs what it is given; a plain ``docker run`` of a service image is healthy;
4. the Compose stack (deploy/compose/ with the S3 stand-in override) up, every healthcheck healthy;
5. import → split → preprocess → train a tiny generator → sample → train a classifier → evaluate →
   test, across the containers through S3 (bench/deploy/sequence.py);
6. ``compose stop`` while a job runs on each of three services: every container must exit 0 inside its
   stop grace period; what each job's watcher saw; the stack started again, each job as its restarted
   server reports it, then cancelled;
7. the Prefect flow-run Job as prefect-kubernetes renders it, run in the flow image against the stack
   (bench/deploy_prefect.py, when present);
8. each Kubernetes Deployment's pod spec replayed with ``docker run``, probes polled, stopped with its
   grace (bench/deploy/k8s_replay.py).

Results go to bench/results/deploy.json after every step; a failed step is recorded and the run exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import secrets
import socket
import sys
import time
from pathlib import Path

from skingenbench.services.platform.settings import SERVICES

from bench.deploy.compose_stack import STAGES, Stack, stack_env
from bench.deploy.engine import docker, open_engine, wait_for
from bench.deploy.images import TARGETS, build, image_name
from bench.deploy.progress import Results, say

ROOT = Path(__file__).resolve().parents[1]


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def _free_loopback(ports: list[int]) -> str | None:
    for last in range(2, 31):
        host = f"127.0.0.{last}"
        if all(_port_free(host, port) for port in ports):
            return host
    return None


def _build_args(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--build-arg wants KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def step_images(args, results: Results) -> None:
    images = {}
    build_args = {"TORCH_VARIANT": args.torch_variant, **_build_args(args.build_arg)}
    log_dir = ROOT / "build" / "deploy-check"
    for target in TARGETS:
        images[target] = build(ROOT, target, args.tag, args.base, build_args, log_dir)
        results.step("images", images)
    if args.cpu_size_probe:
        # The CPU generation image with another torch pair (this machine's CPU torch): built to be
        # measured, not run (docs/docker.md says why the pair differs here).
        probe_args = {**_build_args(args.cpu_size_probe), "TORCH_VARIANT": "cpu"}
        probe = build(ROOT, "generation", "cpu-size-probe", args.base, probe_args, log_dir)
        probe["build_args"] = probe_args
        probe["under_2_5_gb"] = probe["size_bytes"] < 2.5e9
        images["generation_cpu_size_probe"] = probe
        results.step("images", images)
        if not probe["under_2_5_gb"]:
            raise RuntimeError(f"the CPU generation image is {probe['size_gb']} GB, over 2.5 GB")


def step_entrypoint(args, results: Results) -> None:
    """The entrypoint runs what it is given, and a plain ``docker run`` (no settings at all) is healthy."""
    checks = {}
    flow = docker("run", "--rm", "--network", "none", image_name("flow", args.tag), "prefect", "version")
    checks["flow: prefect version"] = flow.stdout.strip().splitlines()[0]
    help_out = docker("run", "--rm", "--network", "none", image_name("preprocessing", args.tag), "--help")
    checks["preprocessing: --help (a skingenbench subcommand)"] = help_out.stdout.strip().splitlines()[0]
    empty = docker("run", "--rm", "--network", "none", "-e", "SKINGENBENCH_STAGE=", image_name("flow", args.tag),
                   "true", check=False)  # fmt: skip
    checks["flow: a program on PATH runs (true)"] = empty.returncode
    name = f"deploy-check-plain-{os.getpid()}"
    docker("rm", "-f", name, check=False)
    started = time.monotonic()
    docker("run", "-d", "--name", name, "--network", "none", image_name("preprocessing", args.tag))
    try:

        def healthy() -> bool:
            state = docker(
                "inspect", "-f", "{{.State.Running}} {{.State.Health.Status}}", name
            ).stdout.split()
            if state[0] != "true":
                logs = docker("logs", name, check=False)
                raise RuntimeError(f"a plain docker run exited: {(logs.stdout + logs.stderr)[-1200:]}")
            return state[1] == "healthy"

        wait_for(
            healthy, 180, interval_s=2, what="a plain `docker run` of the preprocessing image to be healthy"
        )
        checks["plain docker run: healthy after s"] = round(time.monotonic() - started, 1)
        began = time.monotonic()
        docker("stop", "-t", "30", name)
        checks["plain docker run: stop s"] = round(time.monotonic() - began, 1)
        checks["plain docker run: exit code"] = int(
            docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout
        )
    finally:
        docker("rm", "-f", name, check=False)
    results.step("entrypoint", checks)
    if checks["plain docker run: exit code"] != 0:
        raise RuntimeError(f"a plain docker run exited {checks['plain docker run: exit code']} on stop")


def step_compose(args, results: Results, stack: Stack, ports: dict[str, int]) -> None:
    results.step("compose", {"files": list(stack.files), "project": stack.project, "published_ports": ports})
    results.step("compose", {**results.data["steps"]["compose"], **stack.up()})


def step_sequence(args, results: Results, wire, store) -> dict:
    from bench.deploy.sequence import run_sequence

    out = run_sequence(wire, store)
    results.step("sequence", {k: v for k, v in out.items() if k != "refs"})
    return out["refs"]


def step_stop(args, results: Results, stack: Stack, wire, refs: dict) -> None:
    """``compose stop`` with a job running on three services; then the stack starts again, each job is
    looked up on its restarted server (resumed from its checkpoint) and cancelled."""
    from bench.deploy.sequence import BusyJobs

    busy = BusyJobs(wire, refs)
    busy.start()
    # Stopped while the jobs run: wait until each has left the queue (or give up after a minute and a half).
    wait_for(
        lambda: all(s == "JOB_STATE_RUNNING" for s in busy.states_now().values()),
        90,
        interval_s=3,
        what="the busy jobs to be running",
    )
    time.sleep(args.busy_s)
    busy.states_now()
    stopped = stack.stop_all()
    stopped["jobs"] = busy.join()
    results.step("stop", stopped)
    bad = {name: s for name, s in stopped["services"].items() if not s["within_grace"]}
    if bad:
        raise RuntimeError(f"containers not stopped with exit 0 inside their grace: {bad}")
    say("starting the stack again (the interrupted jobs resume, then are cancelled)")
    stopped["restart"] = stack.up()
    stopped["restart"]["job_states"] = busy.resume_and_cancel()
    results.step("stop", stopped)


def step_k8s(args, results: Results) -> None:
    from bench.deploy.k8s_replay import Replay, render

    docs = render(ROOT / args.k8s_overlay)
    token = secrets.token_hex(32)
    replay_secrets = {
        "skingenbench-s3": {"SKINGENBENCH_S3_ACCESS_KEY": "replay", "SKINGENBENCH_S3_SECRET_KEY": token[:24]},
        "skingenbench-auth": {"SKINGENBENCH_AUTH_TOKEN": token},
    }
    # The overlay's image names with this run's tag (as `kustomize edit set image` would).
    image_map = {f"skingenbench/{t}:cpu": image_name(t, args.tag) for t in TARGETS}
    replay = Replay(docs, replay_secrets, image_map, args.s3_image)
    try:
        out = replay.run_all()
    finally:
        replay.close()
    out["overlay"] = args.k8s_overlay
    results.step("k8s_replay", out)
    bad = [name for name, r in out["deployments"].items() if not r.get("ok")]
    if not out["deployments"] or bad:
        raise RuntimeError(f"replayed Deployments that failed: {bad or 'none found'}")


def step_prefect(args, results: Results, stack_env_for_flow: dict[str, str]) -> None:
    """The Prefect deployment's flow-run Job, rendered by prefect-kubernetes and run in the flow image
    against the Compose stack (bench/deploy_prefect.py, helper H2's), when that module exists."""
    try:
        module = importlib.import_module("bench.deploy_prefect")
    except ModuleNotFoundError:
        results.step("prefect_job", {"skipped": "bench/deploy_prefect.py is not in this checkout"})
        return
    check = getattr(module, "check_prefect_flow_job", None)
    if check is None:
        results.step("prefect_job", {"skipped": "bench/deploy_prefect.py has no check_prefect_flow_job"})
        return
    holder: dict = {}
    out = check(
        image_name("flow", args.tag),
        stack_env_for_flow,
        holder,
        deployment="smoke",
        parameters={"grid_spec": args.prefect_grid, "runs_dir": "s3://skingenbench/runs"},
        timeout_s=args.prefect_timeout_s,
    )
    results.step("prefect_job", {"grid_spec": args.prefect_grid, **out})
    if not out.get("ok", False):
        raise RuntimeError(f"the Prefect flow-run Job did not complete: state {out.get('state')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/deploy.json")
    parser.add_argument("--base", default="python:3.11-slim-bookworm", help="the base image (build arg BASE)")
    parser.add_argument("--s3-image", default="local/moto-s3", help="the S3 stand-in image (S3_IMAGE)")
    parser.add_argument("--torch-variant", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tag", default="", help="image tag (default: the torch variant)")
    parser.add_argument("--build-arg", action="append", default=[], help="KEY=VALUE for every build")
    parser.add_argument(
        "--cpu-size-probe",
        nargs="*",
        default=[],
        help="KEY=VALUE build args of a CPU generation image to size",
    )
    parser.add_argument("--pip-port", type=int, default=6601, help="loopback pip index port (local tools)")
    parser.add_argument("--k8s-overlay", default="deploy/k8s/overlays/cpu")
    parser.add_argument("--prefect-grid", default="demo", help="the grid the Prefect smoke deployment runs")
    parser.add_argument("--prefect-timeout-s", type=float, default=1200.0)
    parser.add_argument("--busy-s", type=float, default=5.0, help="seconds the busy jobs run before the stop")
    parser.add_argument(
        "--only",
        nargs="*",
        default=[],
        help="steps to run (images entrypoint compose sequence stop k8s prefect)",
    )
    args = parser.parse_args(argv)
    args.tag = args.tag or args.torch_variant
    os.chdir(ROOT)
    results = Results(ROOT / args.out)
    results.data["settings"] = {k: v for k, v in vars(args).items() if k != "out"}
    wanted = set(args.only) or {"images", "entrypoint", "compose", "sequence", "stop", "k8s", "prefect"}

    try:
        engine = open_engine(args.base, args.s3_image, args.pip_port)
    except Exception as exc:
        results.fail("engine", exc)
        return 1
    results.step("engine", engine.summary())
    token = secrets.token_hex(32)
    # The compose file publishes the services' own ports (and MinIO's 9000, 9001) on SKINGENBENCH_BIND.
    # The check takes a loopback address of its own, 127.0.0.2 onwards, where they are all free: a local
    # stack or a test server on 127.0.0.1 neither breaks it nor is broken by it.
    ports = {stage: SERVICES[stage][1] for stage in STAGES}
    s3_port = 9000
    bind = _free_loopback([*ports.values(), s3_port, 9001])
    if bind is None:
        results.fail("ports", f"no loopback address 127.0.0.2-127.0.0.30 has {sorted(ports.values())} free")
        engine.close()
        return 1
    results.data["settings"]["bind"] = bind
    env = stack_env(token, args.s3_image, args.tag)
    env["SKINGENBENCH_BIND"] = bind
    stack = Stack(ROOT, f"skgbcheck{os.getpid()}", env)
    stack_up = False
    current = "start"

    def begin(name: str) -> None:
        nonlocal current
        current = name
        say(f"step {name}")

    try:
        for name, run in (("images", step_images), ("entrypoint", step_entrypoint)):
            if name in wanted:
                begin(name)
                run(args, results)
        if wanted & {"compose", "sequence", "stop", "prefect"}:
            begin("compose")
            stack_up = True
            step_compose(args, results, stack, ports)
            # The host talks to the stack as the flow would: the published ports and the S3 stand-in.
            os.environ.update(
                {
                    "SKINGENBENCH_S3_ENDPOINT": f"http://{bind}:{s3_port}",
                    "SKINGENBENCH_S3_ACCESS_KEY": env["MINIO_ROOT_USER"],
                    "SKINGENBENCH_S3_SECRET_KEY": env["MINIO_ROOT_PASSWORD"],
                    "SKINGENBENCH_AUTH_TOKEN": token,
                }
            )
            from skingenbench.services.platform.store import store_from_uri

            from bench.deploy.sequence import wiring

            wire = wiring(bind, ports, "s3://skingenbench", token)
            store = store_from_uri("s3://skingenbench")
            refs = {}
            if wanted & {"sequence", "stop"}:
                begin("sequence")
                refs = step_sequence(args, results, wire, store)
            # The stop check before the Prefect run: it is the shorter of the two, and the one every
            # deployment depends on.
            if "stop" in wanted and refs:
                begin("stop")
                step_stop(args, results, stack, wire, refs)
            if "prefect" in wanted:
                begin("prefect")
                flow_env = {
                    "SKINGENBENCH_STORE": "s3://skingenbench",
                    "SKINGENBENCH_S3_ENDPOINT": f"http://{bind}:{s3_port}",
                    "SKINGENBENCH_S3_ACCESS_KEY": env["MINIO_ROOT_USER"],
                    "SKINGENBENCH_S3_SECRET_KEY": env["MINIO_ROOT_PASSWORD"],
                    "SKINGENBENCH_AUTH_TOKEN": token,
                    **{
                        f"SKINGENBENCH_{stage.upper()}_ENDPOINTS": f"{bind}:{port}"
                        for stage, port in ports.items()
                    },
                }
                step_prefect(args, results, flow_env)
        stack.down()
        stack_up = False
        if "k8s" in wanted:
            begin("k8s")
            step_k8s(args, results)
    except Exception as exc:
        results.fail(current, exc)
        if stack_up:
            for service in ("minio", *STAGES):
                say(f"--- {service} logs ---\n{stack.logs(service)}")
    finally:
        if stack_up:
            stack.down()
        engine.close()
    results.data["ok"] = not results.data["failures"]
    results.save()
    say(f"{'PASSED' if results.data['ok'] else 'FAILED'}: results in {results.path}")
    return 0 if results.data["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
