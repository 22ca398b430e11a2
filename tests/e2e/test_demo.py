"""The README's first command, as a newcomer runs it: ``./hack/demo.sh --once`` installs the
project, starts the current release's cluster, runs the whole demo and stops it all.

What it prints is checked against the policies' rules: which Selector won each pod, where the pod
went, what the host added, and that the sentences under the table tell the same story.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.e2e import cluster
from tests.e2e.host import REPO

pytestmark = pytest.mark.skipif(cluster.selected_release() is not cluster.CURRENT,
                                reason="the demo is checked on the current release (the one it runs by default)")

WINNERS = {"nginx-1": "test-fair", "nginx-2": "test-fair", "batch-1": "batch-burst", "batch-2": "batch-burst",
           "batch-3": "batch-burst", "db-1": "db-stays-home", "plain-1": "-"}
TOLERATION = "toleration"
COST = "annotation controller.kubernetes.io/pod-deletion-cost=-1000"


@pytest.fixture(scope="module")
def demo():
    proc = subprocess.run(["bash", str(REPO / "hack" / "demo.sh"), "--once"], cwd=REPO, capture_output=True,
                          text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"demo failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout


def section(out: str, title: str) -> str:
    """The lines printed after the step whose title starts with ``title``, up to the next step."""
    start = out.index(f"==> {title}")
    end = out.find("\n==> ", start + 1)
    return out[out.index("\n", start) + 1:end if end != -1 else len(out)]


def pod_rows(out: str) -> dict:
    block = section(out, "creating sample pods")
    lines = block.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("POD "))
    rows = {}
    for line in lines[header + 1:]:
        if not line.strip():
            break
        name, app, selector, node, *rest = re.split(r"\s{2,}", line.strip())
        rows[name] = {"app": app, "selector": selector, "node": node, "added": rest[0] if rest else ""}
    return rows


def test_the_demo_prints_the_selectors_the_cluster_holds(demo):
    table = section(demo, "applying the original README's Selectors")
    assert table.splitlines()[0].split()[:2] == ["NAME", "PRIORITY"]
    listed = {line.split()[0] for line in table.splitlines()[1:] if line.strip()}
    assert listed == {"test-fair", "test-normal-node-prefer", "test-virtual-node-only", "batch-burst", "db-stays-home"}


def test_each_pod_went_where_its_winning_selector_allows(demo):
    rows = pod_rows(demo)
    assert {name: row["selector"] for name, row in rows.items()} == WINNERS
    nodes = {"normal-1", "normal-2", "virtual-1", "(pending)"}
    assert {row["node"] for row in rows.values()} <= nodes
    # fair: tolerated at creation, free to go either way; on the virtual node it carries the effect.
    for name in ("nginx-1", "nginx-2"):
        assert TOLERATION in rows[name]["added"]
        assert ("label foo=boo" in rows[name]["added"]) == (rows[name]["node"] == "virtual-1")
    # normalNodePrefer: three pods, room for two on normal nodes: at least one bursts, and only
    # the ones on the virtual node were tolerated and got the effect.
    batch = [rows[f"batch-{i}"] for i in (1, 2, 3)]
    assert any(row["node"] == "virtual-1" for row in batch)
    for row in batch:
        on_virtual = row["node"] == "virtual-1"
        assert row["node"] != "(pending)"
        assert (TOLERATION in row["added"]) == on_virtual and (COST in row["added"]) == on_virtual
    # normalNodeOnly and unmatched pods never reach the virtual node and get nothing.
    for name in ("db-1", "plain-1"):
        assert rows[name]["node"] != "virtual-1" and rows[name]["added"] == "-"


def sentences(out: str) -> list:
    """The lines under the pod table: one sentence a pod."""
    block = section(out, "creating sample pods").strip().split("\n\n")
    return block[1].splitlines()


def test_the_sentences_under_the_table_say_what_happened(demo):
    rows = pod_rows(demo)
    told = sentences(demo)
    assert len(told) == len(rows)
    for name, row in rows.items():
        line = next(line for line in told if line.startswith(f"{name} "))
        if row["node"] == "(pending)":
            assert line.startswith(f"{name} is Pending ("), line
        elif row["node"] == "virtual-1":
            assert line.startswith(f"{name} went to virtual node virtual-1: Selector {row['selector']} "), line
            if name.startswith("batch"):
                assert "no normal node had room" in line and "BurstToVirtualNode" in line, line
        else:
            assert line.startswith(f"{name} runs on normal node {row['node']};"), line
        if row["selector"] == "-":
            assert "no Selector" in line, line
        else:
            assert f"Selector {row['selector']} (" in line, line
    assert not any("went to virtual-1 with" in line for line in told)  # the fixed text of old


def test_explain_and_events_show_the_burst(demo):
    bursts = [name for name, row in pod_rows(demo).items() if name.startswith("batch") and row["node"] == "virtual-1"]
    explained = re.search(r"==> admission-host explain default/(\S+) ", demo).group(1)
    assert explained in bursts
    explain = section(demo, "admission-host explain")
    assert "winner: batch-burst (normalNodePrefer), highest priority (0)" in explain
    assert "== result (as a dry-run creation)" in explain
    events = section(demo, "kubectl get events")
    assert events.splitlines()[0].split() == ["POD", "REASON", "MESSAGE"]
    burst_events = {line.split()[0] for line in events.splitlines()[1:] if " BurstToVirtualNode " in line}
    assert burst_events == set(bursts)
    assert "Selector batch-burst" in events


def test_the_demo_stops_what_it_started(demo):
    workdir = re.search(r"\(state in (\S+)\)", demo).group(1)
    assert "==> done: stopping the host and the cluster" in demo
    left = subprocess.run(["pgrep", "-f", workdir], capture_output=True, text=True)
    assert left.stdout == "", f"processes of the demo still running: {left.stdout}"
