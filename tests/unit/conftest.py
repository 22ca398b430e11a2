"""Fixtures of the unit tests: a fake API server, plugins installed as distributions, logging."""

from __future__ import annotations

import logging
import sys
import textwrap

import pytest

from .fakeapi import FakeApiServer


@pytest.fixture
def fake_api():
    """``fake_api(respond)`` starts a scripted API server; every one is closed after the test."""
    servers = []

    def start(respond) -> FakeApiServer:
        server = FakeApiServer(respond)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def install_plugin(tmp_path, monkeypatch):
    """``install_plugin(entry_name, module_name, source)`` makes a distribution with an
    ``admission_host`` entry point importable, exactly as ``pip install`` would (a ``.dist-info``
    on ``sys.path``). The module is forgotten again after the test."""
    modules = []

    def install(entry_name: str, module_name: str, source: str, dist: str = "") -> None:
        dist = dist or f"test-plugin-{entry_name.replace('_', '-')}"
        (tmp_path / f"{module_name}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{dist.replace('-', '_')}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text(f"[admission_host]\n{entry_name} = {module_name}\n")
        modules.append(module_name)

    monkeypatch.syspath_prepend(str(tmp_path))
    yield install
    for name in modules:
        sys.modules.pop(name, None)


@pytest.fixture
def restore_logging():
    """The CLI configures the root logger; put it back so later tests log as before."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
