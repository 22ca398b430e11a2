"""ECI-Profile's own hooks (added through ``admission_host_addhooks``).

The four built-in policies and the default resolution are implemented through these hooks
(``plugins.eci_profile.policies``), so a third-party plugin can add a policy or replace how the
winning Selector is chosen without forking.
"""

from framework import hookspec


@hookspec
def eci_policies(settings):
    """Return :class:`plugins.eci_profile.policies.Policy` objects to offer.

    ``settings`` is the plugin's :class:`plugins.eci_profile.settings.Settings` (virtual-node
    labels and tolerations). A policy's ``name`` is the key used under ``spec.policy``; a later
    registered plugin's policy of the same name replaces an earlier one. Its flags tell the
    controllers what it means: ``effect_at_create``, ``burst_when_unschedulable`` and
    ``tolerate_at_create`` (its ``at_create`` adds the virtual-node tolerations, so the leader
    adds them to a pending pod admitted without them).
    """


@hookspec(firstresult=True)
def eci_selector_matches(selector, pod_labels, namespace_labels):
    """Return True or False to decide whether ``selector`` applies to a pod; None to defer.

    The default compares ``objectLabels`` with the pod's labels and ``namespaceLabels`` with its
    namespace's labels, with Kubernetes LabelSelector semantics. Called only for the candidates
    the index proposes; keep it fast.
    """


@hookspec(firstresult=True)
def eci_resolve(matching, pod, namespace):
    """Return the winning Selector among ``matching`` (a non-empty list sorted by priority,
    highest first, then name), or None to defer. The default takes the first.

    ``pod`` is a Pod (a dict): at creation the pod as admitted; at binding, in the burst
    controller and in ``explain`` of a live pod, the pod as cached (``apiVersion``, ``kind``,
    ``metadata`` with name, namespace, uid and labels, ``spec.tolerations``). ``namespace`` is its
    cached Namespace (name and labels) or None. ``admission-host explain`` names the winner this
    hook chose, and runs ``eci_selector_matches`` as admission does.
    """
