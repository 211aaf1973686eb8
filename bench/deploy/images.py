"""Build the five images from docker/Dockerfile (one ``--target`` each) and record size and build time.

The torch-free images come first: the legacy builder builds every stage above its target, so the torch
layer is built once, by the first torch image, and the other two reuse it from the cache.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.deploy.engine import image_size
from bench.deploy.progress import say

TARGETS = ("preprocessing", "flow", "generation", "evaluation", "classification")
GB = 1e9


def image_name(target: str, tag: str) -> str:
    return f"skingenbench/{target}:{tag}"


def build(root: Path, target: str, tag: str, base: str, build_args: dict[str, str], log_dir: Path) -> dict:
    """One image; the build log goes to ``log_dir``; returns its name, seconds and size."""
    name = image_name(target, tag)
    args = ["build", "--network", "host", "-f", "docker/Dockerfile", "--target", target, "-t", name]
    for key, value in {"BASE": base, **build_args}.items():
        args += ["--build-arg", f"{key}={value}"]
    log = log_dir / f"build-{target}-{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"building {name} (log {log})")
    started = time.monotonic()
    with log.open("w") as out:  # written as the build goes, so a slow build can be followed
        result = subprocess.run(["docker", *args, str(root)], stdout=out, stderr=subprocess.STDOUT)
    seconds = round(time.monotonic() - started, 1)
    if result.returncode != 0:
        raise RuntimeError(f"building {name} failed after {seconds} s: {log.read_text()[-1500:]}")
    size = image_size(name)
    say(f"built {name}: {size / GB:.2f} GB in {seconds} s")
    return {"image": name, "build_s": seconds, "size_bytes": size, "size_gb": round(size / GB, 3)}
