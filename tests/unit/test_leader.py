"""Leader election on a Lease, against a small fake of the coordination.k8s.io API."""

import copy
import threading
import time

import pytest

from framework import Controller
from framework.config import Config
from framework.host import Host
from framework.kube.leader import LeaderElector

from .fakeapi import Reply, status, wait_for
from .helpers import make_plugin

NS, NAME = "ops", "admission-host"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"


class LeaseApi:
    """GET/POST/PUT of Leases with resourceVersion checks, as the API server does them."""

    def __init__(self):
        self.leases = {}
        self.version = 0
        self.lock = threading.Lock()
        self.failing = False
        self.puts = []

    def __call__(self, req):
        if self.failing:
            return Reply(500, status(500, "InternalError"))
        with self.lock:
            if req.method == "POST" and req.path == LEASES:
                name = req.body["metadata"]["name"]
                if name in self.leases:
                    return Reply(409, status(409, "AlreadyExists"))
                return Reply(201, self._store(name, req.body))
            if not req.path.startswith(LEASES + "/"):
                return Reply(404, status(404, "NotFound"))
            name = req.path[len(LEASES) + 1:]
            if req.method == "GET":
                if name not in self.leases:
                    return Reply(404, status(404, "NotFound"))
                return Reply(200, self.leases[name])
            if req.method == "PUT":
                current = self.leases.get(name)
                if current is None:
                    return Reply(404, status(404, "NotFound"))
                if req.body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                    return Reply(409, status(409, "Conflict", "the object has been modified"))
                self.puts.append(copy.deepcopy(req.body["spec"]))
                return Reply(200, self._store(name, req.body))
        return Reply(405, status(405, "MethodNotAllowed"))

    def _store(self, name, body):
        self.version += 1
        lease = copy.deepcopy(body)
        lease["metadata"]["resourceVersion"] = str(self.version)
        self.leases[name] = lease
        return lease

    def holder(self):
        with self.lock:
            lease = self.leases.get(NAME)
            return (lease or {}).get("spec", {}).get("holderIdentity")


@pytest.fixture
def lease_api(fake_api):
    api = LeaseApi()
    server = fake_api(api)
    api.client = server.client
    return api


class Candidate:
    """An elector that records when it led."""

    def __init__(self, api, identity, **kw):
        self.events = []
        kw.setdefault("lease_duration", 2)
        kw.setdefault("renew_deadline", 1.0)
        kw.setdefault("retry_period", 0.02)
        self.elector = LeaderElector(api.client(), NS, NAME, identity,
                                     on_started=lambda: self.events.append("started"),
                                     on_stopped=lambda: self.events.append("stopped"), **kw)

    @property
    def leads(self):
        return self.elector.is_leader


@pytest.fixture
def candidates(lease_api):
    made = []

    def make(identity, **kw):
        candidate = Candidate(lease_api, identity, **kw)
        made.append(candidate)
        return candidate

    yield make
    for candidate in made:
        candidate.elector.stop(release=False)


def test_only_one_of_two_leads(lease_api, candidates):
    a, b = candidates("a"), candidates("b")
    a.elector.start()
    b.elector.start()
    wait_for(lambda: a.leads or b.leads)
    leader, other = (a, b) if a.leads else (b, a)
    deadline = time.monotonic() + 10
    while len(lease_api.puts) < 10:  # many renewal rounds: never two leaders
        assert not (a.leads and b.leads)
        assert time.monotonic() < deadline, "the leader renews"
        time.sleep(0.005)
    assert leader.leads and not other.leads
    assert lease_api.holder() == leader.elector.identity
    assert leader.events == ["started"] and other.events == []
    assert all(spec["holderIdentity"] == leader.elector.identity for spec in lease_api.puts)


def test_release_on_stop_hands_over_at_once(lease_api, candidates):
    a = candidates("a", lease_duration=30)
    a.elector.start()
    wait_for(lambda: a.leads)
    b = candidates("b", lease_duration=30)
    b.elector.start()
    time.sleep(0.1)
    assert not b.leads
    stopped_at = time.monotonic()
    a.elector.stop(release=True)
    assert a.events == ["started", "stopped"] and not a.leads
    wait_for(lambda: b.leads, timeout=2)
    assert time.monotonic() - stopped_at < 2, "no need to wait out the 30 s lease"
    assert lease_api.holder() == "b"
    assert lease_api.leases[NAME]["spec"]["leaseTransitions"] >= 1


def test_stop_without_release_keeps_the_lease(lease_api, candidates):
    a = candidates("a")
    a.elector.start()
    wait_for(lambda: a.leads)
    a.elector.stop(release=False)
    assert lease_api.holder() == "a"
    assert a.events == ["started", "stopped"]


def test_an_expired_lease_is_taken_over_after_its_duration(lease_api, candidates):
    lease_api._store(NAME, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                            "metadata": {"name": NAME, "namespace": NS},
                            "spec": {"holderIdentity": "gone", "leaseDurationSeconds": 1,
                                     "renewTime": "2020-01-01T00:00:00.000000Z", "leaseTransitions": 4}})
    c = candidates("c")
    started = time.monotonic()
    c.elector.start()
    time.sleep(0.5)
    # Expiry is judged on this replica's own clock from when it first saw the lease, never from
    # the holder's timestamps (which may come from a skewed clock).
    assert not c.leads
    wait_for(lambda: c.leads, timeout=3)
    assert time.monotonic() - started >= 1.0
    spec = lease_api.leases[NAME]["spec"]
    assert spec["holderIdentity"] == "c" and spec["leaseTransitions"] == 5
    assert spec["acquireTime"] == spec["renewTime"]


def test_a_lease_that_keeps_being_renewed_is_never_taken(lease_api, candidates):
    a, b = candidates("a", lease_duration=1), candidates("b", lease_duration=1)
    a.elector.start()
    wait_for(lambda: a.leads)
    b.elector.start()
    time.sleep(1.5)  # longer than the lease: renewals keep it
    assert a.leads and not b.leads


def test_the_leader_steps_down_when_it_cannot_renew(lease_api, candidates):
    a = candidates("a", renew_deadline=0.2)
    a.elector.start()
    wait_for(lambda: a.leads)
    lease_api.failing = True
    wait_for(lambda: not a.leads, timeout=3)
    assert a.events == ["started", "stopped"]
    lease_api.failing = False
    wait_for(lambda: a.leads, timeout=3)
    assert a.events == ["started", "stopped", "started"]


def test_controllers_run_only_on_the_leader(lease_api):
    running = {}

    def plugin_for(identity):
        def run(stop):
            running[identity] = True
            stop.wait()
            running[identity] = False
        return make_plugin("ctl", admission_host_controllers=lambda: [Controller(name="ctl", run=run)])

    hosts = []
    for identity in ("h1", "h2"):
        config = Config(enabled_plugins=[], identity=identity, lease_namespace=NS, lease_name=NAME)
        host = Host(config, lease_api.client(), extra_plugins=[plugin_for(identity)])
        host.start()
        host.elector.retry_period = 0.02
        hosts.append(host)
    try:
        wait_for(lambda: any(running.values()))
        time.sleep(0.2)
        assert sorted(running.items(), key=lambda kv: kv[0]) in ([("h1", True)], [("h2", True)])
        leader = next(h for h in hosts if h.is_leader())
        other = next(h for h in hosts if h is not leader)
        leader.stop()
        assert running[leader.config.identity] is False
        wait_for(lambda: running.get(other.config.identity), timeout=5)
        wait_for(other.is_leader)
    finally:
        for host in hosts:
            host.stop()
