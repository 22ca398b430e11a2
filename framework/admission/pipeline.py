"""Run the matching mutators on one working copy and answer with one JSONPatch."""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Dict, Iterable, List, Optional, Tuple

import orjson

from framework.admission import review
from framework.admission.deadline import Runner
from framework.admission.patch import Snapshot
from framework.admission.review import AdmissionRequest
from framework.metrics import Metrics
from framework.types import FAIL, Denied, Mutator

log = logging.getLogger("admission_host.admission")
UNDECLARED_CHECK_EVERY = 16
# Seconds from a request's arrival to its answer: inside deploy/'s webhook timeoutSeconds (5),
# with room for the network and the API server's own work.
DEFAULT_DEADLINE = 4.0
# With the API server's own timeout (sent as a query parameter), the share of it the mutators get.
TIMEOUT_SHARE = 0.8


class Outcome:
    """The verdict on one request: a patch, or a denial ``(code, message)``; the warnings and
    audit annotations to return; the mutators whose work it holds."""

    __slots__ = ("patch", "denied", "mutators", "warnings", "audit_annotations", "status")

    def __init__(self, req: AdmissionRequest, patch: Optional[List[dict]] = None, denied: Optional[tuple] = None,
                 mutators: Tuple[Mutator, ...] = (), warnings: Optional[List[str]] = None,
                 audit_annotations: Optional[Dict[str, str]] = None):
        self.patch = patch or []
        self.denied = denied
        self.mutators = mutators
        self.warnings = req.warnings if warnings is None else warnings
        self.audit_annotations = req.audit_annotations if audit_annotations is None else audit_annotations
        #: For the metrics: patched, unchanged, denied (or error, set by the host).
        self.status = "denied" if denied else "patched" if self.patch else "unchanged"


class _Run:
    """One request on its way through its mutators. A runner thread may take it over while the
    request's thread waits; ``lock`` orders the two, and once ``over`` is set nothing more is
    taken from the mutators. What has been taken is kept apart from the object (``state``,
    ``warnings``, ``audit``), since a late mutator may still be editing the object."""

    __slots__ = ("req", "mutators", "paths", "before", "state", "warnings", "audit", "ran", "writers",
                 "index", "started", "over", "late", "denied", "lock")

    def __init__(self, req: AdmissionRequest, mutators: Tuple[Mutator, ...], paths, before: Snapshot):
        self.req, self.mutators, self.paths = req, mutators, paths
        self.before = self.state = before
        self.warnings, self.audit = list(req.warnings), dict(req.audit_annotations)
        self.ran: List[Mutator] = []
        # Which plugin changed which part, when several plugins share the request.
        self.writers: Optional[Dict[str, str]] = {} if len({m.plugin for m in mutators}) > 1 else None
        self.index = 0
        self.started = time.perf_counter()  # when the current mutator began
        self.over = False
        self.late: Optional[int] = None
        self.denied: Optional[tuple] = None
        self.lock = threading.Lock()


def _who(mutator: Mutator) -> str:
    return f"plugin {mutator.plugin!r} mutator {mutator.name!r}" if mutator.plugin else f"mutator {mutator.name!r}"


class Pipeline:
    """Mutators in a deterministic order (``order``, then name), composed into one patch."""

    def __init__(self, mutators: Iterable[Mutator], metrics: Optional[Metrics] = None,
                 deadline: float = DEFAULT_DEADLINE):
        self.mutators: Tuple[Mutator, ...] = tuple(sorted(mutators, key=lambda m: (m.order, m.name)))
        names = [m.name for m in self.mutators]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate mutator name(s): {', '.join(dupes)}")
        self.metrics = metrics or Metrics()
        #: Every mutator is declared nonblocking: admissions may be answered on the event loop.
        self.nonblocking = bool(self.mutators) and all(m.nonblocking for m in self.mutators)
        self._routes: Dict[tuple, tuple] = {}
        #: Seconds from a request's arrival to its answer, over all its mutators (see deadline.py).
        self.deadline = deadline
        self.runner = Runner()
        #: Testing: re-raise the host's own errors, and check declared paths against a full diff.
        self.strict = False
        self._overlaps_logged: set = set()
        self._requests = -1  # the first request is checked

    def route(self, group: str, resource: str, operation: str) -> Tuple[Mutator, ...]:
        return self._route(group, resource, operation)[0]

    def _route(self, group: str, resource: str, operation: str) -> tuple:
        """The mutators for a request, the paths they may change (None: anywhere), and how many
        of them run in the request's own thread before a runner thread takes over."""
        key = (group, resource, operation)
        found = self._routes.get(key)
        if found is None:
            mutators = tuple(m for m in self.mutators if m.wants(group, resource, operation))
            paths = None
            if mutators and all(m.paths is not None for m in mutators):
                paths = tuple(dict.fromkeys(tuple(p.split(".")) for m in mutators for p in m.paths))
            inline = next((i for i, m in enumerate(mutators) if not m.inline), len(mutators))
            found = self._routes[key] = (mutators, paths, inline)
        return found

    def handle(self, body: bytes, timeout: Optional[float] = None, arrived: Optional[float] = None) -> bytes:
        """One webhook call: AdmissionReview bytes in, AdmissionReview bytes out (the only place
        with bytes). ``timeout`` is the API server's own (the ``timeout`` query parameter it sends):
        the deadline is kept inside it, counted from ``arrived`` (``time.monotonic()`` of the
        request's first byte; default now). Raises :class:`review.ReviewError` for a broken call."""
        api_version, raw = review.parse(body)
        req = self.request(raw, timeout, arrived)
        return review.encode(api_version, req.uid, self.admit(req))

    def request(self, raw: dict, timeout: Optional[float] = None, arrived: Optional[float] = None) -> AdmissionRequest:
        """The :class:`AdmissionRequest` of a validated ``request`` (``review.validate``), due by
        the host's deadline, or by a share of the API server's ``timeout`` when that is shorter,
        after ``arrived``."""
        budget = self.deadline if timeout is None else min(self.deadline, timeout * TIMEOUT_SHARE)
        return AdmissionRequest(raw, deadline=(time.monotonic() if arrived is None else arrived) + budget)

    def admit(self, req: AdmissionRequest) -> Outcome:
        """The verdict on one request: what the webhook answers, before it is encoded.

        Any failure other than a mutator's is the host's own bug: the request is admitted
        unchanged with a warning, never blocked (in strict mode, for tests, it raises).
        """
        start = time.perf_counter()
        try:
            outcome = self.run(req)
        except Exception:
            if self.strict:
                raise
            log.exception("internal error on %r; admitting it unchanged", req)
            outcome = Outcome(req, warnings=["admission-host: internal error, request admitted unchanged"],
                              audit_annotations={})
            outcome.status = "error"
        if outcome.patch and not outcome.denied and log.isEnabledFor(logging.INFO):
            # The one line per changed admission: who changed it, why (the audit annotations
            # name e.g. the Selector), and which paths; never the values.
            log.info("patched %s %s %s/%s by %s%s: %s", req.operation, req.resource_path, req.namespace,
                     req.name or ((req.raw.get("object") or {}).get("metadata") or {}).get("generateName", ""),
                     ",".join(m.name for m in outcome.mutators),
                     "".join(f" {k}={v}" for k, v in outcome.audit_annotations.items()),
                     " ".join(f"{op['op']} {op['path']}" for op in outcome.patch))
        self.metrics.admission(req.resource_path, req.operation, outcome.status, time.perf_counter() - start)
        return outcome

    def run(self, req: AdmissionRequest) -> Outcome:
        """Run the mutators that want ``req`` on ``req.object``, by ``req.deadline``.

        ``req.object`` is edited in place and keeps the result, unless a mutator was late: then
        the outcome's patch is all there is (the late mutator may still hold the object).
        """
        mutators, paths, inline = self._route(req.group, req.resource_path, req.operation)
        if not mutators or not isinstance(req.object, dict):
            return Outcome(req)
        # Mutators edit the object itself; the state before them is kept encoded (only the parts
        # they declared, when all of them did), which is what the patch and a rollback need.
        if paths is not None and not Snapshot.covers(req.object, paths):
            paths = None
        run = _Run(req, mutators, paths, Snapshot(req.object, paths=paths))
        whole = Snapshot(req.object) if self.strict and paths is not None else None
        # With declared paths only those are snapshotted, and a change elsewhere is dropped. Two more
        # encodings of the whole object tell whether that happened; they cost as much as the rest
        # of the pipeline, so one request in UNDECLARED_CHECK_EVERY pays them: a mutator that
        # strays does so on every request and is reported within a few.
        self._requests += 1
        encoded = (orjson.dumps(req.object) if paths is not None
                   and (self.strict or self._requests % UNDECLARED_CHECK_EVERY == 0) else None)
        self._steps(run, inline)
        if not run.over and not self.runner.run(functools.partial(self._steps, run, len(mutators)),
                                                req.time_left()):
            with run.lock:
                if not run.over:  # else it finished just now
                    run.over, run.late = True, run.index
        if run.late is not None:
            return self._late(run)
        if run.denied:
            return Outcome(req, denied=run.denied)
        if encoded is not None and not run.before.unchanged_outside(encoded, req.object):
            names = ", ".join(m.name for m in run.ran)
            self._undeclared(names, req, f"mutators {names} changed the object outside their declared paths")
        patch = run.before.diff(req.object)
        if whole is not None:
            self._check_paths(whole, patch, req.object, run.ran)
        return Outcome(req, patch=patch, mutators=tuple(run.ran))

    def _steps(self, run: _Run, stop: int) -> None:
        """Run mutators ``run.index`` up to ``stop``, in whichever thread has the request."""
        req, paths = run.req, run.paths
        while run.index < stop and not run.over:
            mutator = run.mutators[run.index]
            run.started = started = time.perf_counter()
            error: Optional[Exception] = None
            try:
                mutator.mutate(req)
                # The state after it, which a later failure rolls back to: taking it also proves
                # that what it left can be sent as JSON, so a bad value fails this mutator alone.
                after = snapshot_after(req.object, paths)
                if paths is None and mutator.paths is not None:
                    after = self._keep_to_declared(mutator, req, run.state, after)
            except Exception as exc:  # Denied included
                error = exc
            elapsed = time.perf_counter() - started
            with run.lock:
                if run.over:
                    return  # the request was answered without it
                if time.monotonic() > req.deadline:  # an inline mutator, or the runner beat the waiter
                    run.over, run.late = True, run.index
                    return
                if error is not None and not self._failed(run, mutator, error, elapsed):
                    run.over = True
                    return
                if error is None:
                    self.metrics.mutator(mutator.plugin, mutator.name, "ok", elapsed)
                    last = run.index + 1 == len(run.mutators)
                    changed = run.state.changed(after) if run.writers is not None or not last else ()
                    if run.writers is not None:
                        for part in changed:
                            first = run.writers.setdefault(part, mutator.plugin)
                            if first != mutator.plugin:
                                self._overlap(first, mutator.plugin, part)
                    if changed and not last:
                        # What it put in may be shared (a cached object, a plugin's own dict):
                        # the next mutator edits a copy, never the original.
                        req.object = after.renew(req.object, changed)
                    run.state = after
                    run.ran.append(mutator)
                run.warnings, run.audit = list(req.warnings), dict(req.audit_annotations)
                run.index += 1
        if stop == len(run.mutators):
            with run.lock:
                run.over = True

    def _failed(self, run: _Run, mutator: Mutator, exc: Exception, elapsed: float) -> bool:
        """Apply a failed mutator's failure policy; False when the request ends here (denied)."""
        req = run.req
        if isinstance(exc, Denied):
            self.metrics.mutator(mutator.plugin, mutator.name, "denied", elapsed)
            run.denied = (exc.code, f"{mutator.plugin or mutator.name}: {exc.message}")
            return False
        self.metrics.mutator(mutator.plugin, mutator.name, "error", elapsed)
        who = _who(mutator)
        if mutator.failure_policy == FAIL:
            log.error("%s failed on %r; denying (failure policy Fail)", who, req, exc_info=exc)
            run.denied = (500, f"{who} failed: {exc!r}")
            return False
        log.error("%s failed on %r; its changes are dropped (failure policy Ignore)", who, req, exc_info=exc)
        # What the mutators before it left: kept as each finished.
        req.object = run.state.restore(req.object)
        del req.warnings[len(run.warnings):]
        req.audit_annotations = dict(run.audit)
        req.warn(f"{who} failed and was skipped: {exc}")
        return True

    def _late(self, run: _Run) -> Outcome:
        """The answer when the deadline passed during mutator ``run.late``: what the ones before it
        did; its failure policy applies, and so do those of the mutators that never ran."""
        req, late = run.req, run.mutators[run.late]
        unrun = run.mutators[run.late + 1:]
        self.metrics.mutator(late.plugin, late.name, "late", time.perf_counter() - run.started)
        who = _who(late)
        log.warning("%s did not finish before the deadline of %r; answering without it (failure policy %s)%s",
                    who, req, late.failure_policy,
                    f"; not run: {', '.join(m.name for m in unrun)}" if unrun else "")
        warnings = run.warnings + [f"{who} did not finish before the request's deadline; its changes are dropped"]
        if unrun:
            warnings.append(f"admission-host: mutators {', '.join(m.name for m in unrun)} did not run: "
                            f"the request's deadline had passed")
        denied = None
        failing = [m for m in (late, *unrun) if m.failure_policy == FAIL]
        if failing:
            denied = (500, f"{_who(failing[0])} did not {'finish' if failing[0] is late else 'run'} "
                           f"before the request's deadline (failure policy Fail)")
        return Outcome(req, patch=None if denied else run.before.diff_to(run.state), denied=denied,
                       mutators=tuple(run.ran), warnings=warnings, audit_annotations=run.audit)

    def _keep_to_declared(self, mutator: Mutator, req: AdmissionRequest, state: Snapshot, after: Snapshot):
        """Drop what a mutator changed outside its declared paths, as the paths-only diff would."""
        declared = [tuple(p.split(".")) for p in mutator.paths]
        stray = [part for part in state.changed(after)
                 if not any(_prefix(d, tuple(part.split("."))) for d in declared)]
        if not stray:
            return after
        state.restore_parts(req.object, stray)
        self._undeclared(mutator.name, req, f"plugin {mutator.plugin!r} mutator {mutator.name!r} changed "
                                            f"{', '.join(stray)}, outside its declared paths")
        return Snapshot(req.object)

    def _undeclared(self, mutators: str, req: AdmissionRequest, what: str) -> None:
        self.metrics.undeclared_changes.labels(mutators).inc()
        log.warning("%s on %r; the change is dropped", what, req)
        req.warn(f"admission-host: {what}; the change is dropped")

    def _overlap(self, first: str, second: str, part: str) -> None:
        self.metrics.mutator_overlaps.labels(first, second, part).inc()
        if (first, second, part) not in self._overlaps_logged:
            self._overlaps_logged.add((first, second, part))
            log.warning("plugins %r and %r both change %s in one request; %r runs later and wins "
                        "(logged once for this pair)", first, second, part, second)

    @staticmethod
    def _check_paths(whole: Snapshot, patch: List[dict], final: dict, ran) -> None:
        """Testing: a patch built from the declared paths must equal the full diff's result."""
        import jsonpatch

        applied = jsonpatch.apply_patch(whole.restore(), patch)
        if orjson.dumps(applied, option=orjson.OPT_SORT_KEYS) != orjson.dumps(final, option=orjson.OPT_SORT_KEYS):
            changed = sorted({op["path"] for op in whole.diff(final)})
            declared = sorted({p for m in ran for p in m.paths})
            raise AssertionError(f"mutators {', '.join(m.name for m in ran)} changed {', '.join(changed)} "
                                 f"but declared only the paths {', '.join(declared)}")


class NotJSON(TypeError):
    """A mutator left a value in the object that JSON (and so the API server) cannot carry."""


def snapshot_after(obj, paths) -> Snapshot:
    try:
        return Snapshot(obj, paths=paths)
    except TypeError as exc:  # orjson's JSONEncodeError is a TypeError
        where = not_json_at(obj)
        raise NotJSON(f"left a value that is not JSON at {where or 'an unknown path'} ({exc})") from None


def not_json_at(value, path: str = "") -> Optional[str]:
    """The JSON pointer of the first value JSON cannot carry, or None."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return f"{path}/{key!r} (a {type(key).__name__} key)"
            found = not_json_at(item, f"{path}/{key}")
            if found:
                return found
        return None
    if kind is list or kind is tuple:
        for i, item in enumerate(value):
            found = not_json_at(item, f"{path}/{i}")
            if found:
                return found
        return None
    if kind is int and not -2 ** 63 <= value < 2 ** 64:
        return f"{path} (an integer too large for JSON numbers)"
    if value is None or kind in (str, int, float, bool):
        return None
    return f"{path} (a {kind.__name__})"


def _prefix(a: Tuple[str, ...], b: Tuple[str, ...]) -> bool:
    """Whether one path contains the other (a change of a part holding a declared path counts as
    declared: the snapshot's depth cannot tell more)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]
