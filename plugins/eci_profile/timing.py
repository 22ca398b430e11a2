"""When an Unschedulable normalNodePrefer pod bursts: the rules, as a pure function of the pod's
state, its Selector, what an autoscaler said in the pod's Events, and the time.

Nothing here remembers anything: the burst controller reads the pod (when it became
Unschedulable) and its Events each time, so a decision survives host restarts and leader changes.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import time
from typing import Callable, Iterable, Mapping, Optional, Sequence

from plugins.eci_profile.selectors import format_duration as _fmt

_log = logging.getLogger("admission_host.eci_profile")

PROVISIONING = "provisioning"  # an autoscaler is adding a node for the pod: hold the burst
CANNOT_HELP = "cannotHelp"  # an autoscaler says no node it can add would take the pod
MEANINGS = (PROVISIONING, CANNOT_HELP)


@dataclasses.dataclass(frozen=True)
class AutoscalerRule:
    """An Event on a pod that means something: ``component`` (the event's source or reporting
    component), ``reason``, and optionally text the message must contain."""

    component: str
    reason: str
    means: str
    message: str = ""

    def matches(self, event: Mapping) -> bool:
        source = (event.get("source") or {}).get("component")
        if self.component not in (source, event.get("reportingComponent"), event.get("reportingController")):
            return False
        return event.get("reason") == self.reason and self.message in (event.get("message") or "")


DEFAULT_AUTOSCALER_RULES = (
    AutoscalerRule("cluster-autoscaler", "TriggeredScaleUp", PROVISIONING),
    AutoscalerRule("cluster-autoscaler", "NotTriggerScaleUp", CANNOT_HELP),
    AutoscalerRule("karpenter", "Nominated", PROVISIONING),
    AutoscalerRule("karpenter", "FailedScheduling", CANNOT_HELP),
)


@dataclasses.dataclass(frozen=True)
class Signal:
    """The newest word of an autoscaler about a pod."""

    means: str
    component: str
    reason: str
    at: float


def event_time(event: Mapping) -> float:
    """When an Event last happened (core/v1 and events.k8s.io writers fill different fields)."""
    candidates = [(event.get("series") or {}).get("lastObservedTime"), event.get("lastTimestamp"),
                  event.get("eventTime"), event.get("firstTimestamp"),
                  (event.get("metadata") or {}).get("creationTimestamp")]
    return max((parse_time(c) for c in candidates if c), default=0.0)


def iso_time(epoch: float) -> str:
    """An epoch as Kubernetes writes times (RFC 3339, UTC, whole seconds)."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    text = text.replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(text).timestamp()


def autoscaler_signal(events: Iterable[Mapping], rules: Sequence[AutoscalerRule], since: float,
                      slack: float = 5.0) -> Optional[Signal]:
    """The newest Event matching a rule that happened after the pod became Unschedulable
    (``slack`` seconds of clock skew between components allowed)."""
    best: Optional[Signal] = None
    for event in events:
        at = event_time(event)
        if at < since - slack:
            continue
        for rule in rules:
            if rule.matches(event):
                if best is None or at >= best.at:
                    best = Signal(rule.means, rule.component, rule.reason, at)
                break
    return best


@dataclasses.dataclass(frozen=True)
class Decision:
    burst: bool
    at: float  # when the pod bursts (or burst)
    reason: str  # a metric label: why it bursts at ``at``
    message: str


def decide(now: float, since: float, selector, signal: Optional[Signal], default_max_wait: float) -> Decision:
    """Burst now, or not before ``at``?

    - No waitForAutoscaler: at ``since + burstAfter``.
    - waitForAutoscaler and the newest autoscaler word is "provisioning": held until
      ``since + maxWait`` (never before burstAfter), unless the pod is scheduled first.
    - waitForAutoscaler and the word is "cannot help", or no word: at ``since + burstAfter``.
    """
    delay = selector.burst_delay
    if selector.wait_for_autoscaler and signal is not None and signal.means == PROVISIONING:
        max_wait = selector.max_wait if selector.max_wait is not None else default_max_wait
        at = since + max(max_wait, delay)
        why = (f"{signal.component} is provisioning a node for it ({signal.reason}); "
               f"bursts at maxWait {_fmt(max(max_wait, delay))}")
        return Decision(now >= at, at, "maxWait", why)
    at = since + delay
    if selector.wait_for_autoscaler and signal is not None:
        reason = "autoscalerCannotHelp"
        why = f"{signal.component} cannot add a node for it ({signal.reason}); bursts after {_fmt(delay)}"
    elif selector.wait_for_autoscaler:
        reason = "noAutoscaler"
        why = f"no autoscaler said it is adding a node; bursts after {_fmt(delay)}"
    else:
        reason = "burstAfter" if delay else "unschedulable"
        why = f"bursts after {_fmt(delay)} Unschedulable" if delay else "bursts as soon as it is Unschedulable"
    return Decision(now >= at, at, reason, why)



class PerMinute:
    """At most ``limit`` events a minute per key (a sliding window), for evictions; ``left`` may
    be given a key's own limit (drain-back's maxPerMinute)."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.clock = clock
        self._times = collections.defaultdict(collections.deque)

    def left(self, key: str, limit: Optional[int] = None) -> int:
        """How many more ``key`` may have now."""
        times, now = self._times[key], self.clock()
        while times and now - times[0] >= 60:
            times.popleft()
        return max(0, (self.limit if limit is None else limit) - len(times))

    def used(self, key: str) -> None:
        self._times[key].append(self.clock())


def every(interval: float, stop, step: Callable[[], object], name: str) -> None:
    """Call ``step`` every ``interval`` seconds until ``stop`` (a threading.Event) is set: a
    controller's rounds. A round that raises is logged; the next one tries again."""
    while not stop.wait(interval):
        try:
            step()
        except Exception:
            _log.exception("%s: a round failed", name)
