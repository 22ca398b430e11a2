"""``serve --workers N``: several processes on one port, one /metrics view, replaced when they die."""

import os
import re
import signal
import time

import pytest

from framework.testing import review

from .conftest import NO_CLUSTER, ServerProcess, decoded_patch, deletion_cost_op, labelled_pod

def workers_of(server: ServerProcess) -> set:
    """The pids of the supervisor's children (the serving processes)."""
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == server.proc.pid:
                        found.add(int(pid))
            except (OSError, IndexError, ValueError):
                pass
    return found


def answered_by(server: ServerProcess) -> set:
    return set(re.findall(r"\[worker (\d)\] admission_host.admission: patched", server.output()))


@pytest.fixture
def two_workers(cert_files):
    server = ServerProcess(["--plugins", "pod_deletion_cost", "--workers", "2", "--tls-cert-file",
                            str(cert_files.cert_path), "--tls-private-key-file", str(cert_files.key_path)],
                           ca=cert_files.ca, env=NO_CLUSTER)
    server.wait_ready()
    yield server
    server.stop()


def test_two_workers_share_the_port_and_one_metrics_view(two_workers):
    server = two_workers
    assert len(workers_of(server)) == 2
    sent = 0
    deadline = time.monotonic() + 20
    while answered_by(server) != {"0", "1"} and time.monotonic() < deadline:
        for _ in range(10):  # a new connection each: the kernel hands them to either worker
            assert decoded_patch(server.mutate(review(labelled_pod("-5")))) == [deletion_cost_op("-5")]
            sent += 1
    assert answered_by(server) == {"0", "1"}, server.output()
    metrics = server.request("GET", "/metrics")[2].decode()
    count = re.search(r'admission_host_admissions_total\{operation="CREATE",outcome="patched",resource="pods"\} '
                      r'([0-9.]+)', metrics)
    assert count and float(count.group(1)) == sent  # summed over both workers, whichever answers


def test_a_worker_that_dies_is_replaced_and_sigterm_stops_them_all(two_workers):
    server = two_workers
    first = workers_of(server)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    current = workers_of(server)
    while (len(current) < 2 or victim in current) and time.monotonic() < deadline:
        time.sleep(0.1)
        current = workers_of(server)  # once a turn: the victim may be reaped between two reads
    assert len(current) == 2 and victim not in current, server.output()
    assert "starting a new one" in server.output()
    server.wait_ready()
    for _ in range(10):
        server.assert_serving()
    children = workers_of(server)
    assert server.stop() == 0
    assert not any(os.path.exists(f"/proc/{pid}") for pid in children)


def test_workers_auto_and_a_bad_count(tmp_path):
    from framework.cli import build_parser
    from framework.web.workers import available_cpus

    assert build_parser().parse_args(["serve", "--workers", "auto"]).workers == available_cpus() >= 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--workers", "0"])


def test_a_configuration_error_in_the_workers_exits_2_at_once():
    import subprocess
    import sys

    from .conftest import REPO

    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "framework.cli", "serve", "--workers", "2", "--plugins", "eci_profile",
                           "--insecure-http", "--port", "0"], capture_output=True, text=True, timeout=60,
                          cwd=str(REPO), env={**os.environ, **NO_CLUSTER})
    assert proc.returncode == 2, proc.stderr
    assert "plugins watch eci-namespaces" in proc.stderr and "starting a new one" not in proc.stderr
    assert time.monotonic() - started < 30
