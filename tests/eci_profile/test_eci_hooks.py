"""ECI-Profile's own hooks: a third party adds a policy or replaces resolution without forking."""

from framework import hookimpl
from framework.testing import pod
from plugins.eci_profile.policies import Policy, add_tolerations

from .conftest import TOLERATION, selector


class GpuBurst(Policy):
    name = "gpuBurst"
    effect_at_create = True

    def at_create(self, p, request):
        p["metadata"].setdefault("annotations", {})["gpu"] = "burst"
        return add_tolerations(p, self.settings)


class AddsPolicy:
    @hookimpl
    def eci_policies(self, settings):
        return [GpuBurst(settings)]


class LowestPriorityWins:
    @hookimpl
    def eci_resolve(self, matching):
        return matching[-1]


class NeverMatches:
    @hookimpl
    def eci_selector_matches(self, selector):
        return False


def test_a_third_party_policy(make_harness):
    harness = make_harness(selector("gpu", "gpuBurst", annotations={"x": "y"}),
                           extra_plugins=[("gpu", AddsPolicy())])
    result = harness.create(pod("p"))
    assert result.object["metadata"]["annotations"] == {"gpu": "burst", "x": "y"}
    assert result.object["spec"]["tolerations"] == [TOLERATION]


def test_unknown_policy_without_its_plugin_is_invalid(make_harness):
    harness = make_harness(selector("gpu", "gpuBurst"))
    assert "unknown policy" in harness.store("eci-selectors").get("gpu")["error"]


def test_resolution_can_be_replaced(make_harness):
    harness = make_harness(selector("high", priority=9), selector("low", priority=1),
                           extra_plugins=[("lowest", LowestPriorityWins())])
    assert harness.create(pod("p")).audit_annotations == {"selector": "low"}


def test_matching_can_be_replaced(make_harness):
    harness = make_harness(selector("any"), extra_plugins=[("never", NeverMatches())])
    assert harness.create(pod("p")).audit_annotations == {}


def test_explain_decides_as_admission_does_with_a_custom_match(make_harness):
    """explain used to ignore eci_selector_matches and name a winner admission never picks."""
    from plugins.eci_profile import plugin as eci

    harness = make_harness(selector("any"), extra_plugins=[("never", NeverMatches())])
    text = "\n".join(eci.admission_host_explain(harness.host, pod("p")))
    assert "Selector any (priority 0, fair): not matched (a plugin's eci_selector_matches said no)" in text
    assert "winner: none" in text


class RecordsThePod:
    seen = []

    @hookimpl
    def eci_resolve(self, matching, pod):
        self.seen.append(pod)
        return None  # defer to the default


def test_resolve_hooks_get_a_pod_at_binding_too(make_harness):
    from framework.testing import binding

    from .conftest import default_objects

    waiting = pod("web", labels={"app": "nginx"})
    harness = make_harness(selector("fair-nginx", object_labels={"matchLabels": {"app": "nginx"}}),
                           objects=default_objects() + [waiting], extra_plugins=[("records", RecordsThePod())])
    RecordsThePod.seen.clear()
    harness.create(binding("web", "vk-1"))
    seen = RecordsThePod.seen[0]  # (then again: the harness checks the binding's patch is idempotent)
    assert seen["kind"] == "Pod" and seen["metadata"]["name"] == "web"
    assert seen["metadata"]["labels"] == {"app": "nginx"} and "tolerations" in seen["spec"]
