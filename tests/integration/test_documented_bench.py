"""The documented benchmarks run, with their smallest options: that they work, not what they measure.

``python -m bench`` writes bench/out/, so it runs in a copy of the repository; its exit status
says whether its targets were met, which a loaded test machine cannot promise, so only that it
ran to the end and reported is checked.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.documented import ROOT, documented, run

# The smallest world the benchmark accepts, one short round of everything.
TINY = ("--quick --selectors 10 --namespaces 100 --nodes 10 --pending-pods 2 --rates 200 --rate-duration 1 "
        "--duration 1 --curves selectors --selector-points 10 --scaling-duration 1 --no-warning")


@pytest.fixture
def copy(tmp_path) -> Path:
    dest = tmp_path / "repo"
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".git", "*.egg-info", "__pycache__", "out",
                                                              ".pytest_cache"))
    return dest


def ran_to_the_end(proc, out: Path, parts) -> dict:
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(parts) <= set(results), sorted(results)
    met = [t["met"] for t in results.get("targets", ())]
    assert proc.returncode == (0 if all(met) else 1)
    return results


def test_bench_headline_and_scaling(copy):
    command = documented("python -m bench", "README.md")
    proc = run(f"{command} --only headline,scaling {TINY}", cwd=copy, timeout=240, check=False)
    results = ran_to_the_end(proc, copy / "bench" / "out", ("headline", "scaling"))
    assert results["headline"]["ours"]["errors"] == 0
    assert (copy / "bench" / "out" / "report.md").read_text().startswith("# admission-host benchmark")


def test_bench_micro(copy):
    command = documented("python -m bench", "README.md")
    proc = run(f"{command} --only micro --quick", cwd=copy, timeout=240, check=False)
    assert "micro-benchmarks failed" not in proc.stderr + proc.stdout, proc.stdout[-3000:]
    results = ran_to_the_end(proc, copy / "bench" / "out", ("micro",))
    assert results["micro"], results


def test_bench_pipeline():
    command = documented("python -m bench.pipeline", "README.md")
    out = run(f"{command} -n 500 --naive-iterations 100 --sizes 2000", cwd=ROOT).stdout
    assert re.search(r"^\| \d+ \| \d+ \| [\d.]+ \|", out, re.M), out


def test_bench_eci_profile():
    command = documented("python -m bench.eci_profile", "README.md")
    out = run(command, cwd=ROOT).stdout
    rows = [line.split("|")[0].strip() for line in out.splitlines()[2:]]
    assert rows == ["10", "1000", "10000"], out


def test_bench_eci_profile_memory():
    command = documented("python -m bench.eci_profile --memory", "docs/selectors.md")
    out = run(command, cwd=ROOT).stdout
    assert "caches: 10000 namespaces" in out and re.search(r"drain-back: 100000 running pods .* bytes a pod", out), out
