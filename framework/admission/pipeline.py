"""Run the matching mutators on one working copy and answer with one JSONPatch."""

from __future__ import annotations

import copy
import functools
import logging
import threading
import time
from typing import Dict, Iterable, List, Optional, Tuple

import orjson

from framework import logs
from framework.admission import review
from framework.admission.deadline import Runner
from framework.admission.patch import NotJSON, Snapshot, not_json_at
from framework.admission.review import AdmissionRequest
from framework.event_loop import on_event_loop
from framework.metrics import Metrics
from framework.types import FAIL, Denied, Mutator

log = logging.getLogger("admission_host.admission")
UNDECLARED_CHECK_EVERY = 16
# Distinct JSON pointers that admission_host_mutator_overlaps_total names exactly (see _overlap).
OVERLAP_PATHS = 100
# Seconds from a request's arrival to its answer: inside deploy/'s webhook timeoutSeconds (5),
# with room for the network and the API server's own work.
DEFAULT_DEADLINE = 4.0
# With the API server's own timeout (sent as a query parameter), the share of it the mutators get.
TIMEOUT_SHARE = 0.8
# Seconds one mutator may take when it declares no budget_seconds: a plugin that hangs costs half
# of the default deadline, and the mutators after it still have the other half.
DEFAULT_BUDGET = 2.0
# A nonblocking mutator holding the event-loop thread longer than this is said to block it (in a
# log line at most once a minute for each mutator).
EVENT_LOOP_STALL = 0.01
EVENT_LOOP_STALL_LOG_EVERY = 60.0


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
    ``warnings``, ``audit``), since a late mutator may still be editing the object. A mutator
    abandoned past its budget keeps ``req`` as it was: ``req`` becomes a copy, and ``attempt``
    moves on, which tells the thread running it to stop when it returns."""

    __slots__ = ("req", "mutators", "budgets", "paths", "before", "state", "warnings", "audit", "ran", "writers",
                 "changers", "ops", "index", "current", "attempt", "over", "late", "denied", "lock")

    def __init__(self, req: AdmissionRequest, mutators: Tuple[Mutator, ...], budgets: Tuple[float, ...], paths,
                 before: Snapshot, several_plugins: bool):
        self.req, self.mutators, self.budgets, self.paths = req, mutators, budgets, paths
        self.before = self.state = before
        self.warnings, self.audit = list(req.warnings), dict(req.audit_annotations)
        self.ran: List[Mutator] = []
        # Which plugin set which value (JSON pointer: plugin), when several plugins share the request.
        self.writers: Optional[Dict[str, str]] = {} if several_plugins else None
        # How many mutators changed something, and the operations of the last one that did.
        self.changers = 0
        self.ops: List[dict] = []
        self.index = 0
        self.current = (-1, 0.0)  # the index of the mutator under way and when it began (monotonic)
        self.attempt = 0
        self.over = False
        self.late: Optional[int] = None
        self.denied: Optional[tuple] = None
        self.lock = threading.Lock()


def _who(mutator: Mutator) -> str:
    return f"plugin {mutator.plugin!r} mutator {mutator.name!r}" if mutator.plugin else f"mutator {mutator.name!r}"


class Pipeline:
    """Mutators in a deterministic order (``order``, then name), composed into one patch."""

    def __init__(self, mutators: Iterable[Mutator], metrics: Optional[Metrics] = None,
                 deadline: float = DEFAULT_DEADLINE, budget: float = DEFAULT_BUDGET):
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
        #: Seconds a mutator that declares no ``budget_seconds`` may take.
        self.budget = budget
        self.runner = Runner()
        #: Testing: re-raise the host's own errors, and check declared paths against a full diff.
        self.strict = False
        self._overlaps_logged: set = set()
        self._stalls: Dict[str, list] = {}  # mutator: [when last logged, stalls since, the longest]
        self._overlap_paths: set = set()
        self._requests = -1  # the first request is checked

    def route(self, group: str, resource: str, operation: str) -> Tuple[Mutator, ...]:
        return self._route(group, resource, operation)[0]

    def _route(self, group: str, resource: str, operation: str) -> tuple:
        """The mutators for a request, the paths they may change (None: anywhere), how many of them
        run in the request's own thread before a runner thread takes over, their budgets, the
        parents of the paths (each must be an object for the paths alone to be snapshotted), and
        whether the mutators belong to more than one plugin."""
        key = (group, resource, operation)
        found = self._routes.get(key)
        if found is None:
            mutators = tuple(m for m in self.mutators if m.wants(group, resource, operation))
            paths = parents = None
            if mutators and all(m.paths is not None for m in mutators):
                paths = tuple(dict.fromkeys(tuple(p.split(".")) for m in mutators for p in m.paths))
                parents = tuple(dict.fromkeys(keys[:-1] for keys in paths))
            inline = next((i for i, m in enumerate(mutators) if not m.inline), len(mutators))
            budgets = tuple(self.budget if m.budget_seconds is None else m.budget_seconds for m in mutators)
            several = len({m.plugin for m in mutators}) > 1
            found = self._routes[key] = (mutators, paths, inline, budgets, parents, several)
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
            # The one line per changed admission: which object, which mutators, the keys of the
            # audit annotations they added, and the JSON pointers changed. Never a value: not of
            # the object, and not of an audit annotation either, whatever a plugin puts there
            # (the API server's audit log records those, under its own access rules).
            logs.write(log, logging.INFO, "patched %s %s %s/%s by %s%s: %s", (
                req.operation, req.resource_path, req.namespace,
                req.name or ((req.raw.get("object") or {}).get("metadata") or {}).get("generateName", ""),
                ",".join([m.name for m in outcome.mutators]),
                f" (audit {','.join(outcome.audit_annotations)})" if outcome.audit_annotations else "",
                " ".join([f"{op['op']} {op['path']}" for op in outcome.patch])))
        self.metrics.admission(req.resource_path, req.operation, outcome.status, time.perf_counter() - start)
        return outcome

    def run(self, req: AdmissionRequest) -> Outcome:
        """Run the mutators that want ``req`` on ``req.object``, by ``req.deadline``.

        ``req.object`` is edited in place and keeps the result, unless a mutator was late or
        abandoned past its budget: then the outcome's patch is all there is (that mutator may
        still hold the object).
        """
        mutators, paths, inline, budgets, parents, several = self._route(req.group, req.resource_path,
                                                                          req.operation)
        if not mutators or not isinstance(req.object, dict):
            return Outcome(req)
        # Mutators edit the object itself; the state before them is kept encoded (only the parts
        # they declared, when all of them did), which is what the patch and a rollback need.
        if paths is not None and not Snapshot.covers(req.object, parents):
            paths = None
        run = _Run(req, mutators, budgets, paths, Snapshot(req.object, paths=paths), several)
        whole = Snapshot(req.object) if self.strict and paths is not None else None
        # With declared paths only those are snapshotted, and a change elsewhere is dropped. Two more
        # encodings of the whole object tell whether that happened; they cost as much as the rest
        # of the pipeline, so one request in UNDECLARED_CHECK_EVERY pays them: a mutator that
        # strays does so on every request and is reported within a few.
        self._requests += 1
        encoded = (orjson.dumps(req.object) if paths is not None
                   and (self.strict or self._requests % UNDECLARED_CHECK_EVERY == 0) else None)
        self._steps(run, 0, inline)
        if not run.over:
            self._hand_over(run)
        if run.late is not None:
            return self._late(run)
        req = run.req  # a copy, if a mutator was abandoned
        if run.denied:
            return Outcome(req, denied=run.denied)
        if encoded is not None and not run.before.unchanged_outside(encoded, req.object):
            names = ", ".join(m.name for m in run.ran)
            self._undeclared(names, req, f"mutators {names} changed the object outside their declared paths")
        # When one mutator alone changed something (the common case: one plugin), its operations
        # are the patch; else one diff from the object as received gives the composed result.
        patch = run.ops if run.changers == 1 else run.before.diff(req.object) if run.changers else []
        if whole is not None:
            self._check_paths(whole, patch, req.object, run.ran)
        return Outcome(req, patch=patch, mutators=tuple(run.ran))

    def _steps(self, run: _Run, attempt: int, stop: int) -> None:
        """Run mutators ``run.index`` up to ``stop``, in whichever thread has the request, until it
        is over or the mutator this thread runs is abandoned (``run.attempt`` moves on)."""
        paths = run.paths
        loop = on_event_loop()
        while run.index < stop and not run.over:
            req, index = run.req, run.index
            mutator, budget = run.mutators[index], run.budgets[index]
            started = time.monotonic()
            run.current = (index, started)
            req._due = started + budget  # what request.time_left() tells it
            error: Optional[Exception] = None
            try:
                mutator.mutate(req)
                if attempt != run.attempt:
                    return  # abandoned meanwhile: what it left is never looked at
                # The state after it, which a later failure rolls back to. Taking it, and looking
                # at what it changed, also proves that all it left can be sent as JSON: a bad value
                # fails this mutator alone.
                after = snapshot_after(req.object, paths)
                if paths is None and mutator.paths is not None:
                    after = self._keep_to_declared(mutator, req, run.state, after)
                # Its operations are wanted while it may be the one mutator that changed anything.
                changes = run.state.changes(after, req.object, leaves=run.writers is not None, ops=not run.changers)
            except Exception as exc:  # Denied included
                error = exc
            elapsed = time.monotonic() - started
            if loop:
                self._held_event_loop(mutator, elapsed)
            with run.lock:
                if run.over or attempt != run.attempt:
                    return  # the request was answered, or went on, without it
                if time.monotonic() > req.deadline:  # an inline mutator, or the runner beat the waiter
                    run.over, run.late = True, index
                    return
                # Past its budget, what it did or raised counts no more than if it had not returned.
                if elapsed > budget:
                    if not self._over_budget(run, mutator, elapsed):
                        run.over = True
                        return
                elif error is not None:
                    if not self._failed(run, mutator, error, elapsed):
                        run.over = True
                        return
                else:
                    self.metrics.mutator(mutator.plugin, mutator.name, "ok", elapsed)
                    last = index + 1 == len(run.mutators)
                    if run.writers is not None:
                        self._track(run.writers, mutator.plugin, changes.written, changes.removed)
                    if changes.ops or (changes.ops is None and changes.parts):
                        run.changers += 1
                        run.ops = changes.ops
                    if changes.parts and not last:
                        # What it put in may be shared (a cached object, a plugin's own dict):
                        # the next mutator edits a copy, never the original.
                        req.object = after.renew(req.object, changes.parts)
                    run.state = after
                    run.ran.append(mutator)
                run.warnings, run.audit = list(req.warnings), dict(req.audit_annotations)
                run.index += 1
        if stop == len(run.mutators):
            with run.lock:
                if attempt == run.attempt:
                    run.over = True

    def _hand_over(self, run: _Run) -> None:
        """Run the rest of the chain on a runner thread while this one waits: the whole of it at
        most until the request's deadline, each mutator at most for its budget. One past its
        budget is abandoned where it runs, and the chain goes on from the next one on another
        runner thread."""
        deadline = run.req.deadline
        done = self.runner.start(functools.partial(self._steps, run, run.attempt, len(run.mutators)))
        while not done.acquire(timeout=max(_wake_at(run, deadline) - time.monotonic(), 0.0)):
            with run.lock:
                if run.over:
                    return  # it finished just now
                now = time.monotonic()
                if now > deadline:
                    run.over, run.late = True, run.index
                    return
                index, started = run.current
                if index != run.index or now - started <= run.budgets[index]:
                    continue  # not past its budget: it began (or has yet to) after this thread looked
                run.attempt += 1  # the thread running it stops when it returns
                if not self._over_budget(run, run.mutators[index], now - started, running=True):
                    run.over = True
                    return
                run.warnings, run.audit = list(run.req.warnings), dict(run.req.audit_annotations)
                run.index += 1
                if run.index == len(run.mutators):
                    run.over = True
                    return
            done = self.runner.start(functools.partial(self._steps, run, run.attempt, len(run.mutators)))

    def _over_budget(self, run: _Run, mutator: Mutator, elapsed: float, running: bool = False) -> bool:
        """Drop the work of a mutator that overran its budget, as of one that failed, and apply
        its failure policy; False when the request ends here (denied). ``running``: it has not
        returned, and keeps the request it was given."""
        said = f"{_who(mutator)} did not finish within its budget of {run.budgets[run.index]:g} s"
        self.metrics.mutator(mutator.plugin, mutator.name, "over_budget", elapsed)
        self._roll_back(run, running)
        if mutator.failure_policy == FAIL:
            log.warning("%s on %r; denying (failure policy Fail)", said, run.req)
            run.denied = (500, f"{said} (failure policy Fail)")
            return False
        log.warning("%s on %r; its changes are dropped and the request goes on (failure policy Ignore)", said, run.req)
        run.req.warn(f"{said}; its changes are dropped")
        return True

    def _roll_back(self, run: _Run, running: bool = False) -> None:
        """The request as the last mutator that finished left it: object, warnings and audit
        annotations. ``running``: the mutator undone still holds the request, so the ones after it
        get a copy of that state, sharing nothing with what it holds."""
        req = run.req
        if not running:
            del req.warnings[len(run.warnings):]
            req.audit_annotations = dict(run.audit)
            req.object = run.state.restore(req.object)
            return
        if run.paths is None:
            obj = run.state.restore()
        else:
            # Only the declared parts were kept: the rest is copied from the object itself, in one
            # orjson call (C code, which the running mutator's thread does not interleave with).
            # What that mutator put outside the declared paths never reaches the patch: a value
            # JSON cannot carry may become null there.
            obj = run.state.restore(orjson.loads(orjson.dumps(req.object, default=_null,
                                                              option=orjson.OPT_NON_STR_KEYS)))
        run.req = fresh = copy.copy(req)
        fresh.raw = {**req.raw, "object": obj}
        fresh.object, fresh.warnings, fresh.audit_annotations = obj, list(run.warnings), dict(run.audit)

    def _held_event_loop(self, mutator: Mutator, seconds: float) -> None:
        """A nonblocking mutator's time on the event-loop thread: counted, and said when it blocks
        the loop (at most once a minute for each mutator, since it would on every request)."""
        self.metrics.event_loop(mutator.plugin, mutator.name, seconds)
        if seconds <= EVENT_LOOP_STALL:
            return
        stalls = self._stalls.setdefault(mutator.name, [float("-inf"), 0, 0.0])
        stalls[1] += 1
        stalls[2] = max(stalls[2], seconds)
        now = time.monotonic()
        if now - stalls[0] >= EVENT_LOOP_STALL_LOG_EVERY:
            log.warning("%s held the event-loop thread for %.0f ms, serving nothing else meanwhile (/healthz "
                        "included): it blocks the event loop and should not be declared nonblocking, or should "
                        "call framework.leave_event_loop() before it waits (%d call(s) over %.0f ms since last "
                        "said, the longest %.0f ms; said at most once a minute)", _who(mutator), seconds * 1000,
                        stalls[1], EVENT_LOOP_STALL * 1000, stalls[2] * 1000)
            stalls[:] = [now, 0, 0.0]

    def _failed(self, run: _Run, mutator: Mutator, exc: Exception, elapsed: float) -> bool:
        """Apply a failed mutator's failure policy; False when the request ends here (denied)."""
        req = run.req
        if isinstance(exc, Denied):
            self.metrics.mutator(mutator.plugin, mutator.name, "denied", elapsed)
            run.denied = (exc.code, f"{mutator.plugin or mutator.name}: {exc.message}")
            return False
        self.metrics.mutator(mutator.plugin, mutator.name, "error", elapsed)
        who = _who(mutator)
        # Whichever the policy, a mutator that failed leaves no warning or audit annotation of its
        # own: what the mutators before it added was kept as each finished. (One that raised
        # Denied keeps them, above: they may say why.)
        self._roll_back(run)
        if mutator.failure_policy == FAIL:
            log.error("%s failed on %r; denying (failure policy Fail)", who, req, exc_info=exc)
            run.denied = (500, f"{who} failed: {exc!r}")
            return False
        log.error("%s failed on %r; its changes are dropped (failure policy Ignore)", who, req, exc_info=exc)
        req.warn(f"{who} failed and was skipped: {exc}")
        return True

    def _late(self, run: _Run) -> Outcome:
        """The answer when the deadline passed during mutator ``run.late``: what the ones before it
        did; its failure policy applies, and so do those of the mutators that never ran."""
        req, late = run.req, run.mutators[run.late]
        unrun = run.mutators[run.late + 1:]
        index, started = run.current
        self.metrics.mutator(late.plugin, late.name, "late", time.monotonic() - started if index == run.late else 0.0)
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

    def _track(self, writers: Dict[str, str], plugin: str, written, removed) -> None:
        """Note which plugin set which value (by JSON pointer, leaf by leaf), and tell of a value
        one plugin set that a later one changed or removed: values side by side (two labels, a
        container's image and its resources) are no overlap, only one written over is."""
        for where in removed:
            first = writers.pop(where, None)
            if first is not None and first != plugin:
                self._overlap(first, plugin, where, "removed")
        for where in written:
            first = writers.get(where)
            if first is not None and first != plugin:
                self._overlap(first, plugin, where, "changed")
            writers[where] = plugin

    def _overlap(self, first: str, second: str, where: str, done: str) -> None:
        # The metric's path is the value's JSON pointer: its keys are fields and the label or
        # annotation keys plugins set, list entries are indexes, values never appear. A plugin
        # could still key a value by something unbounded (a name), so after OVERLAP_PATHS distinct
        # pointers in this process a new one is counted under its first two levels, the fields of
        # the object's schema ("/metadata/labels/*"); the log line names it exactly all the same.
        path = where
        if where not in self._overlap_paths:
            if len(self._overlap_paths) < OVERLAP_PATHS:
                self._overlap_paths.add(where)
            else:
                head = "/".join(where.split("/", 3)[:3])
                path = f"{head}/*" if head != where else where
        self.metrics.mutator_overlaps.labels(first, second, path).inc()
        if (first, second, path) not in self._overlaps_logged:
            self._overlaps_logged.add((first, second, path))
            log.warning("plugin %r %s %s, which plugin %r had set in the same request; the later one wins "
                        "(logged once for these plugins and this path)", second, done, where, first)

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


def _wake_at(run: _Run, deadline: float) -> float:
    """When the mutator under way is past its budget, or the request past its deadline if sooner."""
    index, started = run.current
    i = run.index
    if i >= len(run.budgets):
        return deadline
    if index != i:  # the next one has not begun: its budget cannot end sooner than this
        started = time.monotonic()
    return min(deadline, started + run.budgets[i])


def _null(value) -> None:
    return None


def snapshot_after(obj, paths) -> Snapshot:
    try:
        return Snapshot(obj, paths=paths)
    except TypeError as exc:  # orjson's JSONEncodeError is a TypeError
        raise NotJSON(f"{not_json_at(obj) or 'an unknown path'} ({exc})") from None


def _prefix(a: Tuple[str, ...], b: Tuple[str, ...]) -> bool:
    """Whether one path contains the other (a change of a part holding a declared path counts as
    declared: the snapshot's depth cannot tell more)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]
