"""Declared plugin options: checked in one place, before any plugin starts; listed by `plugins`."""

import logging

import orjson
import pytest

from framework import hookimpl
from framework.cli import main
from framework.config import Config
from framework.host import Host
from framework.plugins import PluginError

from .helpers import make_plugin

SOURCE = '''
import dataclasses
from typing import Dict, List, Optional

from framework import hookimpl

STARTED = []


@dataclasses.dataclass
class Options:
    endpoint: str = dataclasses.field(metadata={"help": "where to send things"})
    retries: int = 3
    ratio: float = 0.5
    headers: Dict[str, str] = dataclasses.field(default_factory=dict)
    tags: Optional[List[str]] = None

    def __post_init__(self):
        if not self.endpoint.startswith("https://"):
            raise ValueError(f"endpoint must be an https:// URL, got {self.endpoint!r}")


@hookimpl
def admission_host_options():
    return Options


@hookimpl
def admission_host_startup(options):
    STARTED.append(options)
'''


@pytest.fixture
def declared(install_plugin):
    install_plugin("declared", "declared_options_plugin", SOURCE)
    import declared_options_plugin

    return declared_options_plugin


def host(options, *extra):
    return Host(Config(enabled_plugins=["declared"], plugin_options={"declared": options}), extra_plugins=extra)


def test_hooks_receive_an_instance_of_the_declared_dataclass(declared):
    host({"endpoint": "https://x", "retries": 5, "ratio": 1, "headers": {"a": "b"}})
    options = declared.STARTED[-1]
    assert isinstance(options, declared.Options)
    assert (options.endpoint, options.retries, options.ratio, options.headers, options.tags) == \
        ("https://x", 5, 1, {"a": "b"}, None)


@pytest.mark.parametrize("options, message", [
    ({"endpoint": "https://x", "retrys": 1}, "unknown option(s) retrys; known: endpoint, headers, ratio, retries, tags"),
    ({"endpoint": "https://x", "retries": "3"}, "option retries must be an integer, got '3'"),
    ({"endpoint": "https://x", "retries": True}, "option retries must be an integer, got True"),
    ({"endpoint": "https://x", "headers": {"a": 1}}, "option headers.a must be a string, got 1"),
    ({"endpoint": "https://x", "tags": ["a", {}]}, "option tags[1] must be a string, got {}"),
    ({}, "missing required option(s) endpoint"),
    ({"endpoint": "http://x"}, "endpoint must be an https:// URL, got 'http://x'"),
])
def test_mistakes_stop_the_host_before_any_plugin_starts_naming_the_plugin(declared, options, message):
    other_started = []
    other = make_plugin("other", admission_host_startup=lambda: other_started.append(True))
    with pytest.raises(PluginError) as info:
        host(options, other)
    assert str(info.value) == f"plugin 'declared': {message}"
    assert not declared.STARTED and not other_started


def test_an_option_spelt_another_way_gets_a_hint(declared):
    with pytest.raises(PluginError) as info:
        host({"endpoint": "https://x", "Retries": 1, "extra": 2})
    assert str(info.value) == ("plugin 'declared': unknown option(s) Retries (did you mean 'retries'?), extra; "
                               "known: endpoint, headers, ratio, retries, tags")
    for key in ("virtual_node_labels", "virtual-node-labels"):
        with pytest.raises(PluginError, match=f"unknown option\\(s\\) {key} \\(did you mean 'virtualNodeLabels'\\?\\)"):
            Host(Config(enabled_plugins=["eci_profile"], plugin_options={"eci_profile": {key: {"type": "vk"}}}))


def test_options_of_a_disabled_plugin_are_checked_and_reported_enabling_it_stops_the_host(declared, caplog):
    config = {"declared": {"endpoint": "http://x"}}
    with caplog.at_level(logging.WARNING):
        Host(Config(enabled_plugins=[], plugin_options=config))
    assert ("config has options for plugin 'declared', which is not enabled; enabling it will fail: endpoint must be "
            "an https:// URL, got 'http://x'") in caplog.text
    assert not declared.STARTED, "checked without starting it"
    with pytest.raises(PluginError, match="plugin 'declared': endpoint must be an https:// URL, got 'http://x'"):
        Host(Config(enabled_plugins=["declared"], plugin_options=config))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Host(Config(enabled_plugins=[], plugin_options={"declared": {"endpoint": "https://x"}}))
    assert "plugin 'declared', which is not enabled; they are valid, and unused until it is" in caplog.text


def test_options_of_a_disabled_plugin_that_does_not_load_are_reported_not_fatal(install_plugin, caplog):
    install_plugin("broken", "broken_options_plugin", "import definitely_not_a_module_anywhere\n")
    with caplog.at_level(logging.WARNING):
        Host(Config(enabled_plugins=[], plugin_options={"broken": {"a": 1}}))
    assert "plugin 'broken', which is not enabled; enabling it will fail: plugin 'broken' (broken_options_plugin) " \
           "failed to load" in caplog.text


def test_plugins_lists_options_with_defaults_and_still_lists_when_one_is_missing(declared, capsys, restore_logging):
    code = main(["plugins", "--plugins", "declared,pod_deletion_cost"])
    out, err = capsys.readouterr()
    assert code == 2 and "plugin 'declared': missing required option(s) endpoint" in err
    listed = {p["name"]: p for p in orjson.loads(out)["plugins"]}
    assert set(listed) == {"declared", "pod_deletion_cost"}
    options = {o["name"]: o for o in listed["declared"]["options"]}
    assert options["endpoint"] == {"name": "endpoint", "type": "string", "required": True,
                                   "help": "where to send things"}
    assert options["retries"] == {"name": "retries", "type": "integer", "required": False, "default": 3}
    assert options["headers"]["type"] == "map of string" and options["tags"]["type"] == "list of string or null"


def test_plugins_check_needs_no_options_so_an_image_build_can_run_it(declared, capsys, restore_logging):
    """The build of an image has no deployment's options: a required one must not fail its check."""
    code = main(["plugins", "--check", "--plugins", "declared,pod_deletion_cost"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    listed = orjson.loads(out)
    assert set(listed) == {"plugins"}, "no mutators, watches or controllers: declaring them takes the options"
    declared_entry = next(p for p in listed["plugins"] if p["name"] == "declared")
    assert declared_entry["options"][0] == {"name": "endpoint", "type": "string", "required": True,
                                            "help": "where to send things"}
    assert not declared.STARTED, "no hook but admission_host_options is called"


BROKEN_OPTIONS = '''
import dataclasses
import datetime
from typing import List

from framework import hookimpl


@dataclasses.dataclass
class Options:
    endpoint: str
    retries: int = "3"
    timeout: datetime.timedelta = datetime.timedelta(seconds=5)
    tags: List[str] = dataclasses.field(default_factory=lambda: ["a", 1])


@hookimpl
def admission_host_options():
    return Options
'''


@pytest.mark.parametrize("source, problems", [
    (BROKEN_OPTIONS, ["option retries: its default '3' is not an integer",
                      "option timeout: timedelta cannot be given in a config file (YAML gives strings, numbers, "
                      "booleans, null, lists and maps)",
                      "option tags: its default ['a', 1] is not a list of string"]),
    (SOURCE.replace("return Options", "return Options(endpoint='https://x')"),
     ["admission_host_options must return a dataclass (the class), got Options(endpoint='https://x', retries=3, "
      "ratio=0.5, headers={}, tags=None)"]),
    (SOURCE.replace("tags: Optional[List[str]] = None", "tags: Optional[List['Tag']] = None"),
     ["the options' annotations do not resolve: NameError(\"name 'Tag' is not defined\")"]),
])
def test_plugins_check_finds_a_malformed_options_declaration(install_plugin, capsys, restore_logging, source,
                                                             problems):
    install_plugin("declared", "malformed_options_plugin", source)
    code = main(["plugins", "--check", "--plugins", "declared"])
    out, err = capsys.readouterr()
    expected = "; ".join(f"plugin 'declared': {p}" for p in problems)
    assert code == 2 and err == f"admission-host: error: {expected}\n"
    assert orjson.loads(out)["error"] == expected
    assert [p["name"] for p in orjson.loads(out)["plugins"]] == ["declared"], "listed all the same"


def test_hooks_are_called_in_pluggys_order_tryfirst_and_trylast_honoured():
    calls = []

    def plugin(name, **marks):
        module = make_plugin(name)
        module.admission_host_startup = hookimpl(**marks)(lambda: calls.append(name))
        return module

    Host(Config(enabled_plugins=[]), extra_plugins=[plugin("early", tryfirst=True), plugin("a"), plugin("b"),
                                                    plugin("late", trylast=True)])
    assert calls == ["early", "b", "a", "late"]


@pytest.mark.parametrize("options, message", [
    ({"virtualNodeLabels": ["type=virtual-kubelet"]}, "option virtualNodeLabels must be a map"),
    ({"events": "yes"}, "option events must be a boolean, got 'yes'"),
    ({"defaultMaxWait": "ten minutes"}, "defaultMaxWait"),
    ({"virtualNodeTolerations": [{"operator": "Sometimes"}]}, "operator must be Equal or Exists"),
])
def test_eci_profile_options_are_declared(options, message):
    with pytest.raises(PluginError, match="plugin 'eci_profile': .*" + message):
        Host(Config(enabled_plugins=["eci_profile"], plugin_options={"eci_profile": options}))
