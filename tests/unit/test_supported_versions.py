"""The versions of waitress, falcon and pluggy that CI tests are the two ends of setup.py's ranges.

.ci/run installs each of .ci/constraints-oldest.txt and .ci/constraints-newest.txt in a virtualenv
and runs the integration tests there; a range changed in setup.py without its pins fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
TESTED = ("waitress", "falcon", "pluggy")


def install_requires() -> Dict[str, SpecifierSet]:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    call = next(node for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup")
    listed = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "install_requires"))
    return {req.name.lower(): req.specifier for req in map(Requirement, listed)}


def pins(end: str) -> Dict[str, Version]:
    pinned = {}
    for line in (ROOT / ".ci" / f"constraints-{end}.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pinned[req.name.lower()] = Version(spec.version)
    return pinned


def bound(name: str, operator: str) -> Version:
    found = [Version(s.version) for s in install_requires()[name] if s.operator == operator]
    assert len(found) == 1, f"setup.py: {name} needs one {operator} bound, has {install_requires()[name]}"
    return found[0]


@pytest.mark.parametrize("end", ["oldest", "newest"])
def test_each_file_pins_the_three(end):
    assert sorted(pins(end)) == sorted(TESTED)


@pytest.mark.parametrize("name", TESTED)
def test_the_oldest_pin_is_setup_pys_lower_bound(name):
    assert pins("oldest")[name] == bound(name, ">="), \
        f"setup.py's lower bound for {name} changed: pin it in .ci/constraints-oldest.txt"


@pytest.mark.parametrize("name", TESTED)
def test_the_newest_pin_is_in_the_release_line_below_setup_pys_upper_bound(name):
    newest, upper = pins("newest")[name], bound(name, "<")
    assert install_requires()[name].contains(newest), f"{name}=={newest} is outside setup.py's range"
    # <4 (or <4.0): 3.x; <3.1: 3.0.x. A raised upper bound needs a newer pin, tested.
    release = list(upper.release)
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    release[-1] -= 1
    line = Version(".".join(map(str, release)))
    assert newest >= line, f"setup.py accepts {name} <{upper}: pin its newest release in .ci/constraints-newest.txt"
