"""The plugin built in docs/writing-a-plugin.md works as the guide says, tests included."""

import re
import sys
import types
from pathlib import Path

import pytest

from framework.cli import main

GUIDE = (Path(__file__).resolve().parents[2] / "docs" / "writing-a-plugin.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", GUIDE, re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
MODULE, SETUP, TESTS = PYTHON[:3]


@pytest.fixture
def owner_label(monkeypatch):
    module = types.ModuleType("admission_host_owner_label")
    exec(compile(MODULE, "writing-a-plugin.md (module)", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "admission_host_owner_label", module)
    return module


def test_the_entry_point_names_the_module():
    assert '"admission_host": ["owner_label = admission_host_owner_label"]' in SETUP


def guide_tests():
    return re.findall(r"^def (test_\w+)", TESTS, re.M)


def test_the_guide_has_tests():
    assert len(guide_tests()) >= 4


@pytest.mark.parametrize("name", guide_tests())
def test_the_guides_tests_pass(owner_label, name):
    namespace = {}
    exec(compile(TESTS, "writing-a-plugin.md (tests)", "exec"), namespace)
    namespace[name]()


def test_the_guides_mutate_example(install_plugin, tmp_path, capsys, restore_logging):
    install_plugin("owner_label", "admission_host_owner_label", MODULE)
    shell = next(code for lang, code in BLOCKS if lang == "sh" and "$ cat pod.yaml" in code)
    (tmp_path / "pod.yaml").write_text(shell.split("$ cat pod.yaml\n")[1].split("$ cat")[0])
    (tmp_path / "namespaces.yaml").write_text(shell.split("$ cat namespaces.yaml\n")[1].split("$ admission")[0])
    argv = shell.split("$ admission-host ")[1].split("\n")[0].split()
    assert argv[0] == "mutate"
    code = main([str(tmp_path / a) if a.endswith(".yaml") else a for a in argv])
    out = capsys.readouterr().out
    assert code == 0
    expected = shell.split(" -o object\n")[1].split("  ...")[0]
    assert out.startswith(expected)
