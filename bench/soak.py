"""``make soak``: the bad-input sweep of ``tests/reliability/test_bad_inputs.py``, many times and concurrently,
beside bursts of 64 concurrent Generate calls, against the four services run as their own processes
(``skingenbench serve``) on a folder store. Outside CI: under a minute on two cores.

It writes ``bench/results/reliability.json``: the count of answers per status (sweep and Generate), every
answer that was not the expected status, latency percentiles, each service's resident memory (RSS) before,
at its highest during and after the load, and health at the end. Exit status 1 if any answer was wrong,
a Generate call got anything but OK or RESOURCE_EXHAUSTED, or a service is not SERVING at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

# A DDPM that trains in seconds on one CPU thread (as tests/generation/test_service.py's SMALL).
SMALL_DDPM = {
    "resolution": 16,
    "num_train_timesteps": 50,
    "batch_size": 8,
    "learning_rate": 2e-3,
    "lr_schedule": "constant",
    "lr_warmup_steps": 2,
    "ema_max_decay": 0.9,
    "train_steps": 20,
    "checkpoint_every_steps": 10,
    "default_ddim_steps": 10,
    "sample_batch_size": 8,
}


REPO = Path(__file__).resolve().parents[1]


def _import_test_package() -> None:
    """Make ``tests`` this repository's test folder, as pytest does (``--import-mode=importlib``): the
    folder has no ``__init__.py``, and an installed distribution may ship a top-level ``tests`` package."""
    import types

    package = sys.modules.get("tests")
    if package is not None and list(getattr(package, "__path__", [])) == [str(REPO / "tests")]:
        return
    package = types.ModuleType("tests")
    package.__path__ = [str(REPO / "tests")]
    sys.modules["tests"] = package
    for name in [n for n in sys.modules if n.startswith("tests.")]:
        del sys.modules[name]
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0, 2)

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": at(1.0), "n": len(values)}


@contextlib.contextmanager
def _services(store_root: Path, logs: Path):
    """The four services as processes, each on a free port; yields stage -> (target, pid)."""
    from skingenbench.services.platform.client import health_status
    from skingenbench.services.platform.settings import SERVICES

    env = dict(os.environ, SKINGENBENCH_STORE=store_root.as_uri(), SKINGENBENCH_HOST="127.0.0.1")
    env.pop("SKINGENBENCH_AUTH_TOKEN", None)
    processes: dict[str, tuple[str, subprocess.Popen]] = {}
    try:
        for stage in SERVICES:
            port = _free_port()
            env[f"SKINGENBENCH_{stage.upper()}_PORT"] = str(port)
            log = open(logs / f"{stage}.log", "ab")  # noqa: SIM115 - closed with the process
            process = subprocess.Popen(
                [sys.executable, "-m", "skingenbench.cli", "serve", stage],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
            processes[stage] = (f"127.0.0.1:{port}", process)
        deadline = time.monotonic() + 180
        for stage, (target, process) in processes.items():
            while health_status(target, SERVICES[stage][0], timeout_s=1.0) != "SERVING":
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{stage} did not start; see {logs / (stage + '.log')}")
                time.sleep(0.3)
        yield {stage: (target, process.pid) for stage, (target, process) in processes.items()}
    finally:
        for _, process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in processes.values():
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _train_generator(channel: grpc.Channel, store) -> str:
    """A tiny DDPM on 16 random 16x16 training melanomas: something for Generate to draw from."""
    import numpy as np
    from skingenbench.services.core.manifest import Item, Manifest, Provenance
    from skingenbench.services.platform.client import watch_job
    from skingenbench.services.platform.manifest_io import write_manifest

    from skingenbench.api.v1 import common_pb2, generation_pb2, generation_pb2_grpc
    from tests.reliability.test_bad_inputs import _png

    rng = np.random.default_rng(0)
    items = []
    for index in range(16):
        info = store.put_bytes(f"soak/train/{index}.png", _png(rng, 16), "image/png")
        items.append(Item(info.key, info.sha256, "MEL", f"l{index}", "train", image_id=f"mel_{index}"))
    ref = write_manifest(store, "soak/train/manifest.json", Manifest(items, Provenance(stage="soak")))
    job = generation_pb2_grpc.GenerationStub(channel).StartTraining(
        generation_pb2.TrainGeneratorRequest(
            generator="ddpm",
            profile="tiny",
            config_json=json.dumps(SMALL_DDPM, sort_keys=True),
            train=common_pb2.ManifestRef(uri=ref.uri, sha256=ref.sha256),
            seed=1,
        ),
        timeout=60,
    )
    final = watch_job(channel, job.job_id, timeout_s=600)
    if final.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise SystemExit(f"training the soak's generator failed: {final.error.code} {final.error.message}")
    return {o.name: o.uri for o in final.outputs}["model"]


def soak(out: Path, rounds: int, concurrency: int, generate_calls: int, generate_bursts: int) -> dict:
    from skingenbench.services.platform.client import health_status, open_channel
    from skingenbench.services.platform.settings import SERVICES
    from skingenbench.services.platform.store import LocalFolderStore

    from skingenbench.api.v1 import generation_pb2, generation_pb2_grpc

    _import_test_package()
    from tests.reliability.test_bad_inputs import CASES, Stack, build_world

    with tempfile.TemporaryDirectory(prefix="skingenbench-soak-") as tmp:
        root = Path(tmp)
        (root / "logs").mkdir()
        store = LocalFolderStore(root / "store")
        world = build_world(store)
        with _services(root / "store", root / "logs") as services, contextlib.ExitStack() as channels_stack:
            channels = {s: channels_stack.enter_context(open_channel(t)) for s, (t, _) in services.items()}
            stack = Stack({s: t for s, (t, _) in services.items()}, channels, store, world)
            model_uri = _train_generator(channels["generation"], store)
            pids = {stage: pid for stage, (_, pid) in services.items()}
            time.sleep(1.0)
            rss_before = {stage: _rss_mb(pid) for stage, pid in pids.items()}
            rss_peak = dict(rss_before)
            sampling = threading.Event()

            def sample_rss() -> None:
                while not sampling.wait(0.25):
                    for stage, pid in pids.items():
                        rss_peak[stage] = max(rss_peak[stage], _rss_mb(pid))

            sampler = threading.Thread(target=sample_rss, daemon=True)
            sampler.start()

            sweep_status: Counter = Counter()
            sweep_latency: list[float] = []
            mismatches: list[dict] = []
            lock = threading.Lock()

            def one(case) -> None:
                started = time.perf_counter()
                try:
                    stack.call(case, timeout_s=60)
                    code = grpc.StatusCode.OK
                    details = ""
                except grpc.RpcError as exc:
                    code, details = exc.code(), exc.details() or ""
                elapsed = time.perf_counter() - started
                with lock:
                    sweep_status[code.name] += 1
                    sweep_latency.append(elapsed)
                    if code != case.code or case.text not in details:
                        mismatches.append({"case": case.name, "got": code.name, "details": details[:300]})

            generate_status: Counter = Counter()
            generate_latency: list[float] = []
            generate_stub = generation_pb2_grpc.GenerationStub(channels["generation"])
            request = generation_pb2.GenerateRequest(
                model=model_uri, count=2, sampler=generation_pb2.SamplerOptions(sampler="ddim", steps=5)
            )

            def generate(_: int) -> None:
                started = time.perf_counter()
                try:
                    generate_stub.Generate(request, timeout=120)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    code = exc.code()
                with lock:
                    generate_status[code.name] += 1
                    generate_latency.append(time.perf_counter() - started)

            def bursts() -> None:
                with ThreadPoolExecutor(max_workers=generate_calls) as pool:
                    for _ in range(generate_bursts):
                        list(pool.map(generate, range(generate_calls)))

            started = time.perf_counter()
            burst_thread = threading.Thread(target=bursts)
            burst_thread.start()
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                list(pool.map(one, [case for _ in range(rounds) for case in CASES]))
            burst_thread.join()
            duration = time.perf_counter() - started
            sampling.set()
            sampler.join()
            time.sleep(2.0)
            rss_after = {stage: _rss_mb(pid) for stage, pid in pids.items()}
            health = {stage: health_status(t, SERVICES[stage][0]) for stage, t in stack.targets.items()}

    generate_ok = set(generate_status) <= {"OK", "RESOURCE_EXHAUSTED"}
    report = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": round(duration, 1),
        "sweep": {
            "cases": len(CASES),
            "rounds": rounds,
            "concurrency": concurrency,
            "calls": sum(sweep_status.values()),
            "status_counts": dict(sorted(sweep_status.items())),
            "latency": _percentiles(sweep_latency),
            "mismatches": mismatches,
        },
        "generate": {
            "concurrent_calls": generate_calls,
            "bursts": generate_bursts,
            "images_per_call": request.count,
            "status_counts": dict(sorted(generate_status.items())),
            "latency": _percentiles(generate_latency),
        },
        "rss_mb": {
            stage: {
                "before": round(rss_before[stage], 1),
                "during_max": round(rss_peak[stage], 1),
                "after": round(rss_after[stage], 1),
            }
            for stage in rss_before
        },
        "health_after": health,
    }
    report["ok"] = not mismatches and generate_ok and set(health.values()) == {"SERVING"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench/results/reliability.json")
    parser.add_argument("--rounds", type=int, default=100, help="times the whole sweep is sent")
    parser.add_argument("--concurrency", type=int, default=8, help="sweep calls in flight at once")
    parser.add_argument("--generate-calls", type=int, default=64, help="concurrent Generate calls per burst")
    parser.add_argument("--generate-bursts", type=int, default=10)
    args = parser.parse_args(argv)
    report = soak(Path(args.out), args.rounds, args.concurrency, args.generate_calls, args.generate_bursts)
    print(json.dumps({k: report[k] for k in ("duration_s", "ok")} | {"out": args.out}))
    for problem in report["sweep"]["mismatches"][:10]:
        print(f"  wrong answer: {problem}", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
