"""How many CPUs this process may really use: the CPU set it may run on, and its container's CPU quota.

``os.cpu_count()`` is the node's CPU count. A container limited to 2 CPUs on a 64-CPU node still sees 64,
and a pool of 64 workers there is throttled by the kernel's CFS bandwidth control to 2 CPUs' worth of
time, with 64 processes' memory. The limit lives in the process's cgroup:

- cgroup v2 (the unified hierarchy, Linux ``Documentation/admin-guide/cgroup-v2.rst``, "cpu.max"):
  ``cpu.max`` holds ``"$MAX $PERIOD"``, or ``"max $PERIOD"`` for no limit;
- cgroup v1 (``Documentation/scheduler/sched-bwc.rst``): ``cpu.cfs_quota_us`` (-1 for no limit) and
  ``cpu.cfs_period_us`` in the ``cpu`` controller's hierarchy.

Kubernetes turns ``resources.limits.cpu`` into exactly these files, and ``docker run --cpus`` too. A limit
on any ancestor cgroup applies as well, so the smallest limit from the process's cgroup up to the root is
the one that holds. ``usable_cpu_count`` is the smallest of that limit and the CPU affinity set, rounded
down, at least 1; ``SKINGENBENCH_CPUS`` overrides it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

CPUS_ENV = "SKINGENBENCH_CPUS"
CGROUP_ROOT = "/sys/fs/cgroup"
PROC_SELF_CGROUP = "/proc/self/cgroup"


def usable_cpu_count(
    env: Mapping[str, str] | None = None,
    cgroup_root: str | os.PathLike = CGROUP_ROOT,
    proc_self_cgroup: str | os.PathLike = PROC_SELF_CGROUP,
) -> int:
    """CPUs this process can use: ``SKINGENBENCH_CPUS`` if set, else min(affinity set, cgroup CPU quota),
    rounded down, at least 1. Size worker pools with this, not ``os.cpu_count()``."""
    env = os.environ if env is None else env
    raw = env.get(CPUS_ENV, "").strip()
    if raw:
        try:
            override = int(raw)
        except ValueError:
            raise ValueError(f"{CPUS_ENV} must be a whole number of CPUs, got {raw!r}") from None
        if override < 1:
            raise ValueError(f"{CPUS_ENV} must be at least 1, got {override}")
        return override
    count = float(affinity_cpu_count())
    quota = cgroup_cpu_limit(cgroup_root, proc_self_cgroup)
    if quota is not None:
        count = min(count, quota)
    return max(1, math.floor(count))


def affinity_cpu_count() -> int:
    """CPUs the scheduler lets this process run on (``taskset``, ``docker run --cpuset-cpus``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # platforms without affinity (macOS): all of them


def cgroup_cpu_limit(
    cgroup_root: str | os.PathLike = CGROUP_ROOT, proc_self_cgroup: str | os.PathLike = PROC_SELF_CGROUP
) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (quota / period, e.g. 1.5), the smallest along its
    ancestors, or None when there is none (no limit, no cgroup file system, not Linux)."""
    root = Path(cgroup_root)
    limits: list[float] = []
    for controllers, path in _own_cgroups(proc_self_cgroup):
        if controllers == "":  # cgroup v2: "0::/path"
            limits += _limits_along(root, path, _v2_limit)
        elif "cpu" in controllers.split(","):  # cgroup v1: "4:cpu,cpuacct:/path"
            for mount in (root / controllers, root / "cpu,cpuacct", root / "cpu"):
                if mount.is_dir():
                    limits += _limits_along(mount, path, _v1_limit)
                    break
    return min(limits) if limits else None


def _own_cgroups(proc_self_cgroup: str | os.PathLike) -> list[tuple[str, str]]:
    """(controllers, path) for each line of /proc/self/cgroup ("id:controllers:path")."""
    try:
        text = Path(proc_self_cgroup).read_text()
    except OSError:
        return []
    entries = []
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) == 3:
            entries.append((parts[1], parts[2] or "/"))
    return entries


def _limits_along(mount: Path, cgroup_path: str, read_limit) -> list[float]:
    """The limits set on the cgroup and each ancestor up to the mount's root.

    In a container with its own cgroup namespace the path is "/" and the mount is the container's
    cgroup; without one the path names the host's hierarchy, which the container's mount may not
    contain, and then only the mount's root (the container's own cgroup) is found."""
    limits = []
    path = PurePosixPath("/") / cgroup_path.lstrip("/")
    for directory in (path, *path.parents):
        limit = read_limit(mount / str(directory).lstrip("/"))
        if limit is not None:
            limits.append(limit)
    return limits


def _v2_limit(directory: Path) -> float | None:
    try:
        fields = (directory / "cpu.max").read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _v1_limit(directory: Path) -> float | None:
    try:
        quota = (directory / "cpu.cfs_quota_us").read_text().strip()
        period = (directory / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None  # an unreadable file is no limit, never a crash at start-up
    if quota_us <= 0 or period_us <= 0:  # -1: unlimited (v1)
        return None
    return quota_us / period_us
