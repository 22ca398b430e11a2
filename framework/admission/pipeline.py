"""Run the matching mutators on one working copy and answer with one JSONPatch."""

from __future__ import annotations

import logging
import time
from typing import Dict, Iterable, List, Optional, Tuple

import orjson

from framework.admission import review
from framework.admission.budget import MutatorTimeout, Watchdog
from framework.admission.patch import Snapshot
from framework.admission.review import AdmissionRequest
from framework.metrics import Metrics
from framework.types import FAIL, Denied, Mutator

log = logging.getLogger("admission_host.admission")
UNDECLARED_CHECK_EVERY = 16


class Outcome:
    __slots__ = ("patch", "denied", "mutators")

    def __init__(self, patch: Optional[List[dict]] = None, denied: Optional[tuple] = None,
                 mutators: Tuple[Mutator, ...] = ()):
        self.patch = patch or []
        self.denied = denied
        self.mutators = mutators


class Pipeline:
    """Mutators in a deterministic order (``order``, then name), composed into one patch."""

    def __init__(self, mutators: Iterable[Mutator], metrics: Optional[Metrics] = None,
                 mutator_timeout: Optional[float] = None):
        self.mutators: Tuple[Mutator, ...] = tuple(sorted(mutators, key=lambda m: (m.order, m.name)))
        names = [m.name for m in self.mutators]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate mutator name(s): {', '.join(dupes)}")
        self.metrics = metrics or Metrics()
        self._routes: Dict[tuple, tuple] = {}
        # A mutator call that overruns this many seconds is interrupted (its failure policy applies).
        self.watchdog = Watchdog(mutator_timeout) if mutator_timeout else None
        #: Testing: re-raise the host's own errors, and check declared paths against a full diff.
        self.strict = False
        self._overlaps_logged: set = set()
        self._requests = -1  # the first request is checked

    def route(self, group: str, resource: str, operation: str) -> Tuple[Mutator, ...]:
        return self._route(group, resource, operation)[0]

    def _route(self, group: str, resource: str, operation: str) -> tuple:
        """The mutators for a request, and the paths they may change (None: anywhere)."""
        key = (group, resource, operation)
        found = self._routes.get(key)
        if found is None:
            mutators = tuple(m for m in self.mutators if m.wants(group, resource, operation))
            paths = None
            if mutators and all(m.paths is not None for m in mutators):
                paths = tuple(dict.fromkeys(tuple(p.split(".")) for m in mutators for p in m.paths))
            found = self._routes[key] = (mutators, paths)
        return found

    def handle(self, body: bytes) -> bytes:
        """One webhook call: AdmissionReview bytes in, AdmissionReview bytes out.

        Raises :class:`review.ReviewError` for a broken call. Any other failure is the host's own
        bug: the request is admitted unchanged with a warning, never blocked.
        """
        start = time.perf_counter()
        api_version, raw = review.parse(body)
        req = AdmissionRequest(raw)
        resource, operation = req.resource_path, req.operation
        try:
            outcome = self.run(req)
            if outcome.denied:
                status = "denied"
                answer = review.response(api_version, req.uid, warnings=req.warnings, denied=outcome.denied,
                                         audit_annotations=req.audit_annotations)
            else:
                status = "patched" if outcome.patch else "unchanged"
                answer = review.response(api_version, req.uid, patch=outcome.patch, warnings=req.warnings,
                                         audit_annotations=req.audit_annotations)
                if outcome.patch and log.isEnabledFor(logging.INFO):
                    # The one line per changed admission: who changed it, why (the audit
                    # annotations name e.g. the Selector), and which paths; never the values.
                    log.info("patched %s %s %s/%s by %s%s: %s", operation, resource, req.namespace,
                             req.name or (req.object.get("metadata") or {}).get("generateName", ""),
                             ",".join(m.name for m in outcome.mutators),
                             "".join(f" {k}={v}" for k, v in req.audit_annotations.items()),
                             " ".join(f"{op['op']} {op['path']}" for op in outcome.patch))
        except Exception:
            if self.strict:
                raise
            log.exception("internal error on %r; admitting it unchanged", req)
            status = "error"
            answer = review.response(api_version, req.uid,
                                     warnings=["admission-host: internal error, request admitted unchanged"])
        self.metrics.admission(resource, operation, status, time.perf_counter() - start)
        return answer

    def run(self, req: AdmissionRequest) -> Outcome:
        """Run the mutators that want ``req`` on ``req.object`` (edited in place: it keeps the result)."""
        mutators, paths = self._route(req.group, req.resource_path, req.operation)
        if not mutators or not isinstance(req.object, dict):
            return Outcome()
        # Mutators edit the object itself; the state before them is kept encoded (only the parts
        # they declared, when all of them did), which is what the patch and a rollback need.
        if paths is not None and not Snapshot.covers(req.object, paths):
            paths = None
        before = state = Snapshot(req.object, paths=paths)
        whole = Snapshot(req.object) if self.strict and paths is not None else None
        # With declared paths only those are snapshotted, and a change elsewhere is dropped. Two more
        # encodings of the whole object tell whether that happened; they cost as much as the rest
        # of the pipeline, so one request in UNDECLARED_CHECK_EVERY pays them: a mutator that
        # strays does so on every request and is reported within a few.
        self._requests += 1
        encoded = (orjson.dumps(req.object) if paths is not None
                   and (self.strict or self._requests % UNDECLARED_CHECK_EVERY == 0) else None)
        ran = []
        # Which plugin changed which part, when several plugins share the request.
        writers: Optional[Dict[str, str]] = {} if len({m.plugin for m in mutators}) > 1 else None
        for mutator in mutators:
            warnings_before, audit_before = len(req.warnings), dict(req.audit_annotations)
            started = time.perf_counter()
            try:
                ident = self.watchdog.start(mutator.name) if self.watchdog else 0
                try:
                    mutator.mutate(req)
                finally:
                    if self.watchdog is not None and self.watchdog.finish(ident):
                        raise MutatorTimeout(f"exceeded its time budget of {self.watchdog.budget:g}s")
                # The state after it, which a later failure rolls back to: taking it also proves
                # that what it left can be sent as JSON, so a bad value fails this mutator alone.
                after = snapshot_after(req.object, paths)
                if paths is None and mutator.paths is not None:
                    after = self._keep_to_declared(mutator, req, state, after)
            except Denied as exc:
                self.metrics.mutator(mutator.plugin, mutator.name, "denied", time.perf_counter() - started)
                return Outcome(denied=(exc.code, f"{mutator.plugin or mutator.name}: {exc.message}"))
            except Exception as exc:
                self.metrics.mutator(mutator.plugin, mutator.name, "error", time.perf_counter() - started)
                who = f"plugin {mutator.plugin!r} mutator {mutator.name!r}" if mutator.plugin else f"mutator {mutator.name!r}"
                if mutator.failure_policy == FAIL:
                    log.exception("%s failed on %r; denying (failure policy Fail)", who, req)
                    return Outcome(denied=(500, f"{who} failed: {exc!r}"))
                log.exception("%s failed on %r; its changes are dropped (failure policy Ignore)", who, req)
                req.object = state.restore(req.object)
                del req.warnings[warnings_before:]
                req.audit_annotations = audit_before
                req.warn(f"{who} failed and was skipped: {exc}")
                continue
            self.metrics.mutator(mutator.plugin, mutator.name, "ok", time.perf_counter() - started)
            if writers is not None:
                for part in state.changed(after):
                    first = writers.setdefault(part, mutator.plugin)
                    if first != mutator.plugin:
                        self._overlap(first, mutator.plugin, part)
            state = after
            ran.append(mutator)
        if encoded is not None and not before.unchanged_outside(encoded, req.object):
            names = ", ".join(m.name for m in ran)
            self._undeclared(names, req, f"mutators {names} changed the object outside their declared paths")
        patch = before.diff(req.object)
        if whole is not None:
            self._check_paths(whole, patch, req.object, ran)
        return Outcome(patch=patch, mutators=tuple(ran))

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
