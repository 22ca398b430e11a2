"""In-process cost of one admission, stage by stage, and of the naive way to do the same.

    python -m bench.pipeline                      # 6.5 KB pod, 20,000 iterations a stage
    python -m bench.pipeline --size 20000 -n 5000
    python -m bench.pipeline --sizes 2000,6500,20000,50000

The mutator adds two annotations and a toleration (``bench/plugin.py``) and declares the paths it
changes, as the bundled plugins do; the same mutator without the declaration is measured too. Every iteration is timed
on its own with ``time.perf_counter_ns``; the table gives the median, p99 and mean in µs.

Stages of ``Pipeline.handle(body)`` (framework/admission/pipeline.py):
  parse      ``review.parse``: orjson.loads of the AdmissionReview + validation of the request
  before     what the pipeline keeps of the pod before the mutators run: ``patch.Snapshot``, the
             encodings of the parts the mutator declares it changes (``paths``), or of the whole
             pod's subtrees for a mutator that declares nothing
  mutator    the mutator editing the pod
  patch      the JSONPatch of before vs after: ``snapshot.diff(pod)``
  serialise  ``review.response``: the patch as base64 JSON inside the AdmissionReview answer
  handle     the whole ``Pipeline.handle(body)`` (the stages + routing, metrics, log call)
The naive way: ``json.loads``, ``copy.deepcopy``, the same mutator, ``jsonpatch.make_patch`` of the
whole pod, ``json.dumps``.
"""

from __future__ import annotations

import argparse
import base64
import copy
import gc
import json
import logging
import os
import statistics
import sys
import time
import types
from typing import Callable, List, Optional

import jsonpatch
import orjson

from bench import plugin
from bench.pods import DEFAULT_SIZE, make_pod, review
from framework.admission import review as review_mod
from framework.admission.patch import clone, make_patch

try:
    from framework.admission.patch import Snapshot
except ImportError:  # versions that diff against a deep copy
    Snapshot = None
from framework.admission.pipeline import Pipeline
from framework.admission.review import AdmissionRequest

TARGET_US = 60.0


class Result:
    def __init__(self, name: str, samples_ns: List[int]):
        self.name = name
        s = sorted(samples_ns)
        self.n = len(s)
        self.median = statistics.median(s) / 1000
        self.p99 = s[min(len(s) - 1, int(len(s) * 0.99))] / 1000
        self.mean = sum(s) / len(s) / 1000

    def row(self) -> str:
        return f"| {self.name:<44} | {self.median:>9.1f} | {self.p99:>9.1f} | {self.mean:>9.1f} |"


def measure(name: str, fn: Callable[[], object], n: int, setup: Optional[Callable[[], object]] = None,
            warmup: int = 200) -> Result:
    """Time ``fn()`` (or ``fn(setup())``, setup untimed) ``n`` times, one sample per call."""
    clock = time.perf_counter_ns
    samples = []
    gc.collect()
    if setup is None:
        for _ in range(warmup):
            fn()
        for _ in range(n):
            t = clock()
            fn()
            samples.append(clock() - t)
    else:
        for _ in range(warmup):
            fn(setup())
        for _ in range(n):
            arg = setup()
            t = clock()
            fn(arg)
            samples.append(clock() - t)
    return Result(name, samples)


def naive_handle(body: bytes) -> bytes:
    """The obvious implementation: stdlib json, deepcopy, jsonpatch over the whole object."""
    review_obj = json.loads(body)
    request = review_obj["request"]
    req = AdmissionRequest(request)
    original = request["object"]
    req.object = copy.deepcopy(original)
    plugin.mutate(req)
    patch = jsonpatch.make_patch(original, req.object).patch
    response = {"uid": request["uid"], "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return json.dumps({"apiVersion": review_obj["apiVersion"], "kind": "AdmissionReview",
                       "response": response}).encode()


def check(body: bytes, pipeline: Pipeline) -> List[dict]:
    """Both ways give patches that turn the pod into the same object."""
    ours = orjson.loads(pipeline.handle(body))["response"]
    theirs = json.loads(naive_handle(body))["response"]
    pod = orjson.loads(body)["request"]["object"]
    a = jsonpatch.apply_patch(pod, orjson.loads(base64.b64decode(ours["patch"])))
    b = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(theirs["patch"])))
    assert a == b, "the two patches disagree"
    return orjson.loads(base64.b64decode(ours["patch"]))


def stages(size: int, n: int, naive_n: int, log_file: Optional[str]) -> List[Result]:
    pod = make_pod(size)
    body = orjson.dumps(review(pod))
    pipeline = Pipeline([plugin.MUTATOR])
    undeclared = Pipeline([plugin.UNDECLARED])
    on_runner = Pipeline([plugin.ON_RUNNER])
    patch = check(body, pipeline)
    assert check(body, undeclared) == patch
    api_version, raw = review_mod.parse(body)
    original = raw["object"]
    mutated = clone(original)
    plugin.mutate(_Req(mutated))
    uid = raw["uid"]

    def serialise(patch):
        if hasattr(review_mod, "encode"):
            verdict = types.SimpleNamespace(patch=patch, denied=None, warnings=[], audit_annotations={})
            return review_mod.encode(api_version, uid, verdict)
        return review_mod.response(api_version, uid, patch=patch)  # before the pipeline had admit()
    paths = tuple(tuple(p.split(".")) for p in plugin.PATHS)

    def fresh_request():
        return _Req(clone(original))

    results = [
        measure("orjson.loads(body)", lambda: orjson.loads(body), n),
        measure("parse: review.parse(body) (loads + checks)", lambda: review_mod.parse(body), n),
    ]
    if Snapshot is not None:
        declared = Snapshot(original, paths=paths)
        whole = Snapshot(original)
        assert declared.diff(mutated) == patch and whole.diff(mutated) == patch
        results += [
            measure("before: Snapshot(pod, declared paths)", lambda: Snapshot(original, paths=paths), n),
            measure("mutator: 2 annotations + 1 toleration", plugin.mutate, n, setup=fresh_request),
            measure("patch: snapshot.diff(pod), declared paths", lambda: declared.diff(mutated), n),
            measure("serialise: the AdmissionReview answer", lambda: serialise(patch), n),
            measure("handle: Pipeline.handle(body)", lambda: pipeline.handle(body), n),
            measure("before: Snapshot(pod), whole pod", lambda: Snapshot(original), n),
            measure("patch: snapshot.diff(pod), whole pod", lambda: whole.diff(mutated), n),
            measure("handle, mutator without declared paths", lambda: undeclared.handle(body), n),
            measure("handle, mutator on a runner thread (not inline)", lambda: on_runner.handle(body), n),
        ]
    else:
        results += [
            measure("before: clone(pod) (working copy)", lambda: clone(original), n),
            measure("mutator: 2 annotations + 1 toleration", plugin.mutate, n, setup=fresh_request),
            measure("patch: make_patch(original, edited)", lambda: make_patch(original, mutated), n),
            measure("serialise: the AdmissionReview answer", lambda: serialise(patch), n),
            measure("handle: Pipeline.handle(body)", lambda: pipeline.handle(body), n),
        ]
    if log_file:
        # As served: the INFO line the pipeline writes for every patched request, through the
        # handler `admission-host serve` installs (framework/logs.py), to a file.
        from framework.logs import BufferedStreamHandler

        handler = BufferedStreamHandler(open(log_file, "a"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        old_level, old_handlers = root.level, root.handlers[:]
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        try:
            results.append(measure("handle, with its INFO log line written", lambda: pipeline.handle(body), n))
        finally:
            root.handlers[:] = old_handlers
            root.setLevel(old_level)
            stream = handler.stream
            handler.close()
            stream.close()
    results += [
        measure("naive: json.loads(body)", lambda: json.loads(body), naive_n),
        measure("naive: copy.deepcopy(pod)", lambda: copy.deepcopy(original), naive_n),
        measure("naive: jsonpatch.make_patch(original, edited)",
                lambda: jsonpatch.make_patch(original, mutated), naive_n),
        measure("naive: whole handler", lambda: naive_handle(body), naive_n),
    ]
    return results


class _Req:
    """Just what the mutator touches."""

    __slots__ = ("object",)

    def __init__(self, obj):
        self.object = obj


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="pod size in bytes (default 6500)")
    parser.add_argument("--sizes", help="comma-separated sizes: only Pipeline.handle (declared paths / not), "
                                        "one row per size")
    parser.add_argument("-n", "--iterations", type=int, default=20000, help="samples per stage (default 20000)")
    parser.add_argument("--naive-iterations", type=int, default=2000, help="samples per naive stage (default 2000)")
    parser.add_argument("--no-log-stage", action="store_true", help="skip the stage with the INFO log line")
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}, orjson {orjson.__version__}, pid {os.getpid()}")
    if args.sizes:
        print("\n| pod bytes | review bytes | handle median µs | p99 µs | undeclared paths median µs "
              "| naive median µs | naive / handle |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        pipeline = Pipeline([plugin.MUTATOR])
        undeclared = Pipeline([plugin.UNDECLARED])
        for size in (int(s) for s in args.sizes.split(",")):
            pod = make_pod(size)
            body = orjson.dumps(review(pod))
            check(body, pipeline)
            ours = measure("handle", lambda: pipeline.handle(body), args.iterations)
            whole = measure("handle", lambda: undeclared.handle(body), args.iterations)
            naive = measure("naive", lambda: naive_handle(body), args.naive_iterations)
            print(f"| {len(orjson.dumps(pod))} | {len(body)} | {ours.median:.1f} | {ours.p99:.1f} | "
                  f"{whole.median:.1f} | {naive.median:.1f} | {naive.median / ours.median:.0f}x |")
        return 0
    pod = make_pod(args.size)
    body = orjson.dumps(review(pod))
    print(f"pod {len(orjson.dumps(pod))} bytes ({len(pod['spec']['containers'])} containers), "
          f"AdmissionReview {len(body)} bytes; {args.iterations} samples a stage "
          f"({args.naive_iterations} for the naive ones)\n")
    results = stages(args.size, args.iterations, args.naive_iterations,
                     None if args.no_log_stage else os.devnull)
    print(f"| {'stage':<44} | {'median µs':>9} | {'p99 µs':>9} | {'mean µs':>9} |")
    print(f"|{'-' * 46}|{'-' * 10}:|{'-' * 10}:|{'-' * 10}:|")
    for r in results:
        print(r.row())
    by_name = {r.name: r for r in results}
    handle = by_name["handle: Pipeline.handle(body)"]
    naive = by_name["naive: whole handler"]
    print(f"\nPipeline.handle median {handle.median:.1f} µs (target ≤ {TARGET_US:.0f} µs: "
          f"{'met' if handle.median <= TARGET_US else 'NOT met'}); "
          f"the naive handler is {naive.median / handle.median:.0f}x slower ({naive.median:.0f} µs).")
    return 0 if handle.median <= TARGET_US else 1


if __name__ == "__main__":
    sys.exit(main())
