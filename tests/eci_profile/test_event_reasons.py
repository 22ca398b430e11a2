"""Event reasons are an interface (alerts and `kubectl get events --field-selector reason=...` use
them): every reason the plugin posts is documented, and every documented one is posted."""

import ast
import re
from pathlib import Path

from plugins.eci_profile import timing

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugins" / "eci_profile"
DOCS = [REPO / "docs" / "selectors.md", REPO / "docs" / "operations.md"]
REASON = r"`([A-Z][a-z]+(?:[A-Z][a-z]*)+)`"


def posted_reasons():
    """The reason (second argument) of every ``event_later(...)`` and ``event(...)`` call."""
    found = {}
    for path in sorted(PLUGIN.glob("*.py")):
        for call in ast.walk(ast.parse(path.read_text())):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and call.func.attr in ("event_later", "event")
                    and not any(isinstance(a, ast.Starred) for a in call.args)):  # the poster passing one on
                reason = call.args[1] if len(call.args) > 1 else None
                assert isinstance(reason, ast.Constant), f"{path.name}:{call.lineno}: a reason that is not a literal"
                found[reason.value] = f"{path.name}:{call.lineno}"
    return found


def documented_reasons():
    """The reasons in the **Events** paragraph of operations.md, and those called an Event anywhere in
    the docs ("a `Reason` Event", "Event `Reason`")."""
    found = set()
    for doc in DOCS:
        text = doc.read_text()
        found |= set(re.findall(REASON + r"(?:\s+\(Warning\))?\s+[Ee]vent", text))
        found |= set(re.findall(r"[Ee]vent\s+" + REASON, text))
        paragraph = re.search(r"\*\*Events\*\*:(.*?)\n\n", text, re.S)
        if paragraph:
            found |= set(re.findall(REASON, paragraph.group(1)))
    return found


def read_reasons():
    """The reasons of others' Events the plugin reads (autoscalers', the scheduler's): documented, not posted."""
    found = {rule.reason for rule in timing.DEFAULT_AUTOSCALER_RULES}
    for path in PLUGIN.glob("*.py"):
        found |= set(re.findall(r"reason=([A-Z]\w+)", path.read_text()))  # field selectors
    return found


def test_every_event_reason_posted_is_documented_and_every_documented_one_is_posted():
    posted, documented = posted_reasons(), documented_reasons()
    assert {r: where for r, where in posted.items() if r not in documented} == {}, "posted, not documented"
    assert documented - set(posted) - read_reasons() == set(), "documented, never posted"
    assert len(posted) >= 6  # the scans found the calls (BurstToVirtualNode, DrainBack, ...)
