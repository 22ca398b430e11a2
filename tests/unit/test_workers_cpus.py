"""--workers auto: the CPUs the process may use, a container's CPU limit (cgroup v2) included."""

import pytest

from framework.web import workers


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """``set(cpus, cpu_max)``: the process's CPU affinity and the content of its cgroup's cpu.max
    (None: no such file, as outside cgroup v2)."""
    def set_(cpus, cpu_max):
        monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: set(range(cpus)))
        path = tmp_path / "cpu.max"
        if cpu_max is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(cpu_max + "\n")
        monkeypatch.setattr(workers, "CPU_MAX", str(path))
    return set_


@pytest.mark.parametrize("cpus, cpu_max, expected", [
    (8, "150000 100000", 2),  # a limit of 1.5 CPUs: rounded up
    (8, "200000 100000", 2),
    (8, "50000 100000", 1),  # under one CPU is still one worker
    (8, "max 100000", 8),  # no limit
    (2, "400000 100000", 2),  # a limit above the affinity: the affinity
])
def test_the_cpus_are_the_affinity_capped_by_the_cgroup_quota(machine, cpus, cpu_max, expected):
    machine(cpus, cpu_max)
    assert workers.available_cpus() == expected


@pytest.mark.parametrize("cpu_max", [None, "", "150000", "lots 100000", "1.5 1"])
def test_without_a_readable_quota_the_cpus_are_the_affinity(machine, cpu_max):
    machine(8, cpu_max)
    assert workers.available_cpus() == 8


def test_workers_auto_is_the_cpus_available(machine):
    from framework.cli import build_parser

    machine(8, "150000 100000")
    assert workers.workers_arg("auto") == 2
    assert build_parser().parse_args(["serve", "--workers", "auto"]).workers == 2
