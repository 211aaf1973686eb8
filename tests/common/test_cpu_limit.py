"""usable_cpu_count on fake cgroup file systems (v1 and v2, limits on the cgroup or an ancestor)."""

from __future__ import annotations

import os

import pytest
from skingenbench.services.core import cpu_limit
from skingenbench.services.core.cpu_limit import cgroup_cpu_limit, usable_cpu_count


@pytest.fixture
def many_cpus(monkeypatch):
    """An affinity set of 16 CPUs, so the cgroup limit is what the answers test."""
    monkeypatch.setattr(cpu_limit, "affinity_cpu_count", lambda: 16)


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _v2(tmp_path, cpu_max: str | None, own_path: str = "/", **ancestors: str):
    """A cgroup v2 mount; ``ancestors`` maps a relative cgroup path to its cpu.max."""
    root = tmp_path / "cgroup"
    root.mkdir()
    if cpu_max is not None:
        _write(root / own_path.lstrip("/") / "cpu.max", cpu_max)
    for rel, text in ancestors.items():
        _write(root / rel.replace("__", "/") / "cpu.max", text)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(f"0::{own_path}\n")
    return root, proc


def test_v2_quota_in_a_container_namespace_is_rounded_down(tmp_path, many_cpus):
    root, proc = _v2(tmp_path, "250000 100000\n")  # docker run --cpus 2.5
    assert cgroup_cpu_limit(root, proc) == 2.5
    assert usable_cpu_count({}, root, proc) == 2


def test_v2_no_limit_leaves_the_affinity_set(tmp_path, many_cpus):
    root, proc = _v2(tmp_path, "max 100000\n")
    assert cgroup_cpu_limit(root, proc) is None
    assert usable_cpu_count({}, root, proc) == 16


def test_v2_a_limit_on_an_ancestor_holds_for_the_child(tmp_path, many_cpus):
    # kubepods/pod/container: the pod's limit (3 CPUs) is lower than the container's (none).
    root, proc = _v2(
        tmp_path,
        "max 100000",
        own_path="/kubepods/pod1/ctr",
        kubepods__pod1="300000 100000",
        kubepods="1600000 100000",
    )
    assert cgroup_cpu_limit(root, proc) == 3.0
    assert usable_cpu_count({}, root, proc) == 3


def test_a_fraction_of_a_cpu_is_still_one_worker(tmp_path, many_cpus):
    root, proc = _v2(tmp_path, "50000 100000")  # limits.cpu: 500m
    assert usable_cpu_count({}, root, proc) == 1


def test_the_affinity_set_wins_when_it_is_smaller(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_limit, "affinity_cpu_count", lambda: 2)
    root, proc = _v2(tmp_path, "800000 100000")
    assert usable_cpu_count({}, root, proc) == 2


def test_v1_cfs_quota_and_unlimited(tmp_path, many_cpus):
    root = tmp_path / "cgroup"
    mount = root / "cpu,cpuacct"
    _write(mount / "cpu.cfs_quota_us", "400000\n")
    _write(mount / "cpu.cfs_period_us", "100000\n")
    proc = tmp_path / "proc_self_cgroup"
    # Without a cgroup namespace the path names the host's hierarchy, absent from the container's mount:
    # the mount's root (the container's own cgroup) is what is found.
    proc.write_text("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    assert cgroup_cpu_limit(root, proc) == 4.0
    assert usable_cpu_count({}, root, proc) == 4
    _write(mount / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_limit(root, proc) is None
    assert usable_cpu_count({}, root, proc) == 16


def test_no_cgroup_files_and_garbage_are_no_limit(tmp_path, many_cpus):
    assert cgroup_cpu_limit(tmp_path / "absent", tmp_path / "absent_proc") is None
    root, proc = _v2(tmp_path, "lots 100000")
    assert cgroup_cpu_limit(root, proc) is None
    assert usable_cpu_count({}, root, proc) == 16


def test_the_environment_overrides_and_bad_values_are_refused(tmp_path, many_cpus):
    root, proc = _v2(tmp_path, "100000 100000")
    assert usable_cpu_count({"SKINGENBENCH_CPUS": "6"}, root, proc) == 6
    with pytest.raises(ValueError, match="SKINGENBENCH_CPUS must be a whole number"):
        usable_cpu_count({"SKINGENBENCH_CPUS": "two"}, root, proc)
    with pytest.raises(ValueError, match="at least 1"):
        usable_cpu_count({"SKINGENBENCH_CPUS": "0"}, root, proc)


def test_on_this_machine_it_is_within_the_affinity_set():
    count = usable_cpu_count({})
    assert 1 <= count <= len(os.sched_getaffinity(0))
