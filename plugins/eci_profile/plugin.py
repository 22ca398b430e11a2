"""ECI-Profile's hookimpls: the host's entry point into the plugin (entry point ``eci_profile``)."""

from __future__ import annotations

import logging
import weakref

from framework import Controller, Mutator, hookimpl
from plugins.eci_profile import hookspecs, policies
from plugins.eci_profile.burst import BurstController
from plugins.eci_profile.cap import CapRecordCleaner
from plugins.eci_profile.cap_enforcement import CapEnforcer
from plugins.eci_profile.misplaced import MisplacedPodEvictor
from plugins.eci_profile.drain import DrainBackController
from plugins.eci_profile.label_sweep import LabelSweepController
from plugins.eci_profile.profile import SELECTORS, EciProfile
from plugins.eci_profile.settings import Options, Settings
from plugins.eci_profile.status import SelectorStatusController

BUILTIN = "eci_profile.builtin"
SHUTDOWN_LABELS_WAIT = 2.0  # seconds a stopping host gives the labels of its last bindings

log = logging.getLogger(__name__)

# One engine per host (tests run several hosts in one process).
_profiles: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def profile_of(host) -> EciProfile:
    return _profiles[host]


@hookimpl
def admission_host_addhooks(pluginmanager):
    pluginmanager.add_hookspecs(hookspecs)
    if not pluginmanager.is_registered(policies):
        pluginmanager.register(policies, name=BUILTIN)


@hookimpl
def admission_host_options():
    return Options


@hookimpl
def admission_host_startup(host, options):
    _profiles[host] = EciProfile(host, Settings.from_options(options))


@hookimpl
def admission_host_shutdown(host):
    profile = _profiles.get(host)
    if profile is not None and profile.labeler is not None:
        # Bindings admitted just before the stop: their labels go out once the binding is stored.
        left = profile.labeler.drain(SHUTDOWN_LABELS_WAIT)
        if left:
            log.warning("stopping with %d pod(s) bound to virtual nodes not labelled yet", left)


@hookimpl
def admission_host_watches(host):
    return profile_of(host).watches()


@hookimpl
def admission_host_mutators(host):
    profile = profile_of(host)
    # nonblocking: they read the caches. A cache miss's GET goes through the host's KubeClient,
    # which moves the request off the event loop first, with its timeout from request.time_left();
    # the binding's label PATCH is sent later, from a thread of its own (binding_labels.py).
    # skip: pods it never changes need not even be sent (profile.left_alone still guards them).
    return [
        Mutator(name="eci-profile-pod", mutate=profile.mutate_pod, resources=("pods",), operations=("CREATE",),
                paths=("metadata.annotations", "metadata.labels", "spec.tolerations", "spec.nodeSelector",
                       "spec.affinity"),
                nonblocking=True, skip=("daemonset-pods", "static-pods", "mirror-pods")),
        # The whole deadline: a capped binding's record (a GET and a PUT, retried on conflict) may need it.
        Mutator(name="eci-profile-binding", mutate=profile.mutate_binding, resources=("pods/binding",),
                operations=("CREATE",), paths=("metadata.annotations", "metadata.labels"), nonblocking=True,
                budget_seconds=30.0),
    ]


@hookimpl
def admission_host_controllers(host):
    profile = profile_of(host)
    profile.track_full_tiers()  # every replica: admission reads it
    burst = BurstController(profile)
    status = SelectorStatusController(profile, waiting_count=burst.waiting_count)
    burst.on_waiting_changed = lambda selector: status.queue.add([selector])
    drain = DrainBackController(profile)
    sweep = LabelSweepController(profile)
    controllers = (burst, status, drain, sweep, CapRecordCleaner(profile.cap_records, host.store(SELECTORS)),
                   CapEnforcer(profile), MisplacedPodEvictor(profile))
    return [Controller(name=c.name, run=c.run) for c in controllers]


@hookimpl
def admission_host_explain(host, obj):
    if obj.get("kind") != "Pod":
        return None
    return profile_of(host).explain_lines(obj, (obj.get("metadata") or {}).get("namespace") or "default")
