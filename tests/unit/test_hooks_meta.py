"""Every host hook is documented in docs/hooks.md and exercised by a test; the declaration types
and the request are documented field by field."""

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from framework import AdmissionRequest, Controller, Mutator, Watch, hookspecs

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "hooks.md").read_text(encoding="utf-8")
SPECS = {name: getattr(fn, f"{hookspecs.PROJECT}_spec") for name, fn in vars(hookspecs).items()
         if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")}


def test_the_hookspecs_are_found():
    assert "admission_host_mutators" in SPECS and "admission_host_addhooks" in SPECS


def section(name: str) -> str:
    """The text under the heading that names the hook, up to the next heading of any level."""
    match = re.search(rf"^(#+) [^\n]*\b{name}\b[^\n]*\n(.*?)(?=^#+ )", DOC + "\n# end", re.M | re.S)
    return match.group(2) if match else ""


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_is_documented(name):
    text = section(name)
    assert text, f"docs/hooks.md has no heading for {name}"
    spec = inspect.signature(getattr(hookspecs, name))
    assert f"def {name}({', '.join(spec.parameters)})" in text, f"the documented signature of {name} is stale"
    opts = SPECS[name]
    assert ("historic" in text.lower()) == bool(opts.get("historic")), f"historic or not, for {name}"
    assert ("firstresult" in text.lower()) == bool(opts.get("firstresult")), f"firstresult or not, for {name}"


def sources():
    sources = [p for p in REPO.glob("tests/**/*.py") if p.resolve() != Path(__file__).resolve()]
    sources += list(REPO.glob("plugins/examples/**/tests/*.py"))
    return {p: p.read_text(encoding="utf-8") for p in sources}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_is_exercised_by_a_test(name):
    texts = sources()
    assert any(re.search(rf"\b{name}\b", text) for text in texts.values()), f"no test uses {name}"


@pytest.mark.parametrize("cls", [Mutator, Watch, Controller])
def test_every_declaration_field_is_documented(cls):
    text = DOC[DOC.index(f"### {cls.__name__}"):]
    text = text[:text.index("\n### ", 1)] if "\n### " in text[1:] else text
    for field in dataclasses.fields(cls):
        assert f"`{field.name}`" in text, f"{cls.__name__}.{field.name} is not documented"


def test_every_request_attribute_is_documented():
    text = section("AdmissionRequest")
    public = [n for n in AdmissionRequest.__slots__ if not n.startswith("_")]
    public += [n for n, v in vars(AdmissionRequest).items()
               if not n.startswith("_") and (isinstance(v, property) or inspect.isfunction(v))]
    for name in public:
        assert f"`{name}`" in text or f"`{name}(" in text, f"AdmissionRequest.{name} is not documented"
