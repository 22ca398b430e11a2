"""Hosts with ECI-Profile and generated caches, shared by the micro-benchmarks (built once per pytest run)."""

from __future__ import annotations

import logging
from typing import Dict

import pytest

from bench import world
from framework.config import Config
from framework.host import Host
from plugins.eci_profile import plugin as eci

# The headline's cluster; the Selector count varies where a benchmark says so.
BASE = world.Params()
SELECTOR_COUNTS = (10, 1_000, 10_000)


class Setup:
    def __init__(self, params: world.Params):
        self.params = params
        self.host = Host(Config(enabled_plugins=["eci_profile"], leader_election=False), None)
        self.host.load_objects(world.objects(params))
        self.host.start()
        self.profile = eci.profile_of(self.host)
        self.requests: Dict[str, bytes] = {}
        for cls, body in world.mix(params, count=40):
            self.requests.setdefault(cls, body)

    def close(self):
        self.host.stop()


@pytest.fixture(scope="session")
def setups():
    made: Dict[int, Setup] = {}

    def get(selectors: int = BASE.selectors) -> Setup:
        if selectors not in made:
            import dataclasses

            made[selectors] = Setup(dataclasses.replace(BASE, selectors=selectors))
        return made[selectors]

    yield get
    for s in made.values():
        s.close()


@pytest.fixture(autouse=True)
def quiet():
    """As at log level WARNING: the pipeline's INFO line is not built (a benchmark turns it on)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    yield
    root.setLevel(level)
