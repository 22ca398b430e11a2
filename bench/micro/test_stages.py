"""The admission pipeline's stages, in-process, per request class of the benchmark's mix.

    python -m pytest bench/micro --benchmark-only                        # all (~30 s)
    python -m pytest bench/micro --benchmark-only -k match               # one stage
    python -m pytest bench/micro --benchmark-only --benchmark-compare    # against the last --benchmark-autosave

Not collected by the default ``python -m pytest`` (its testpaths are tests/ and the example plugin's).
Groups, one per stage, so that a regression points at its stage:

| group | what is timed |
|---|---|
| ``parse`` | ``review.parse(body)``: orjson.loads of the AdmissionReview and the checks of ``request`` |
| ``match`` | ECI-Profile's Selector resolution: the namespace from the cache, the index lookup, matching, priority (pod CREATE at 10 / 1,000 / 10,000 Selectors); for a binding, the node and pending-pod lookups as well |
| ``compose`` | ``Pipeline.run(request)``: snapshot of the declared paths, ECI-Profile's mutator, the JSONPatch |
| ``serialise`` | ``review.encode(...)``: the answer with its base64 patch, warnings, audit annotations |
| ``handle`` | the whole ``Pipeline.handle(body)``, bytes in, bytes out (metrics included), and once with the INFO line written |

Everything runs on the headline's cluster (``bench/world.py``: 1,000 Selectors, 10,000 namespaces,
5,000 nodes, 20,000 pending pods) unless the Selector count is a parameter.
"""

from __future__ import annotations

import logging
import os

import pytest

from bench import world
from framework import logs
from framework.admission import review
from framework.admission.patch import clone
from framework.admission.review import AdmissionRequest

from .conftest import SELECTOR_COUNTS

CLASSES = world.CLASSES


def _request(setup, cls):
    api_version, raw = review.parse(setup.requests[cls])
    return api_version, raw


def _fresh(raw):
    """A request as the pipeline gets it: its own copy of the object (made outside the timing)."""
    copy = dict(raw)
    copy["object"] = clone(raw["object"])
    return (AdmissionRequest(copy),), {}


@pytest.mark.benchmark(group="parse")
@pytest.mark.parametrize("cls", CLASSES)
def test_parse(benchmark, setups, cls):
    body = setups().requests[cls]
    api_version, raw = benchmark(review.parse, body)
    assert raw["operation"] == "CREATE"


@pytest.mark.benchmark(group="match")
@pytest.mark.parametrize("selectors", SELECTOR_COUNTS)
@pytest.mark.parametrize("cls", ("create-match", "create-nomatch"))
def test_match_pod(benchmark, setups, cls, selectors):
    setup = setups(selectors)
    _, raw = _request(setup, cls)
    pod, namespace = raw["object"], raw["namespace"]
    winner = benchmark(setup.profile.resolve, pod, namespace).selector
    assert (winner is not None) == (cls == "create-match")


@pytest.mark.benchmark(group="match")
@pytest.mark.parametrize("cls", ("bind-virtual", "bind-normal"))
def test_match_binding(benchmark, setups, cls):
    setup = setups()
    profile = setup.profile
    _, raw = _request(setup, cls)
    node, namespace, name = raw["object"]["target"]["name"], raw["namespace"], raw["name"]

    def match():
        if not profile.node_is_virtual(node):
            return None
        return profile.resolve(profile.pending_pod(namespace, name), namespace).selector

    winner = benchmark(match)
    assert (winner is not None) == (cls == "bind-virtual")


@pytest.mark.benchmark(group="compose")
@pytest.mark.parametrize("cls", CLASSES)
def test_compose(benchmark, setups, cls):
    setup = setups()
    _, raw = _request(setup, cls)
    outcome = benchmark.pedantic(setup.host.pipeline.run, setup=lambda: _fresh(raw), rounds=2000, warmup_rounds=100)
    assert bool(outcome.patch) == (cls in ("create-match", "bind-virtual"))


@pytest.mark.benchmark(group="serialise")
@pytest.mark.parametrize("cls", CLASSES)
def test_serialise(benchmark, setups, cls):
    setup = setups()
    api_version, raw = _request(setup, cls)
    (req,), _ = _fresh(raw)
    outcome = setup.host.pipeline.run(req)
    answer = benchmark(review.encode, api_version, req.uid, outcome)
    assert (b'"patch"' in answer) == bool(outcome.patch)


@pytest.mark.benchmark(group="handle")
@pytest.mark.parametrize("cls", CLASSES)
def test_handle(benchmark, setups, cls):
    setup = setups()
    body = setup.requests[cls]
    answer = benchmark(setup.host.pipeline.handle, body)
    assert (b'"patch"' in answer) == (cls in ("create-match", "bind-virtual"))


@pytest.mark.benchmark(group="handle")
def test_handle_with_info_line(benchmark, setups):
    """As served at the default level: the INFO line of a patched admission, formatted and queued
    by framework.logs' handler (written to /dev/null in batches)."""
    setup = setups()
    body = setup.requests["create-match"]
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    with open(os.devnull, "w") as devnull:
        handler = logs.BufferedStreamHandler(devnull)
        handler.setFormatter(logs.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))  # as setup()
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        try:
            benchmark(setup.host.pipeline.handle, body)
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
            handler.close()
