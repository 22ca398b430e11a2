"""The testing kit as pytest fixtures, registered as the pytest plugin ``admission_host_testing``
when admission-host is installed (``pytest11`` entry point)."""

import pytest

from framework.testing import harness_fixture


@pytest.fixture
def plugin_harness():
    """``plugin_harness(*plugins, options=..., objects=..., kube=...)`` gives a
    :class:`framework.testing.PluginHarness`; each is closed after the test."""
    yield from harness_fixture()
