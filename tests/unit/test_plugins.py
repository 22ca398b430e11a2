"""Plugin discovery and validation (get_plugin_manager), and how the Host calls declaration hooks."""

import logging
import types

import pytest

from framework import Mutator, Watch, hookimpl, hookspec
from framework.config import Config
from framework.host import Host
from framework.plugins import PluginError, describe, get_plugin_manager, installed_plugins

from .helpers import make_plugin

GREETER = """
from framework import Mutator, hookimpl

@hookimpl
def admission_host_mutators(options):
    def mutate(req):
        req.object["metadata"].setdefault("labels", {})["greeting"] = options.get("word", "hello")
    return [Mutator(name="greeter", mutate=mutate)]
"""


def test_installed_plugins_are_found_by_entry_point(install_plugin):
    install_plugin("greeter", "greeter_plugin", GREETER)
    assert installed_plugins()["greeter"].value == "greeter_plugin"
    pm = get_plugin_manager(["greeter"])
    assert pm.has_plugin("greeter")
    assert describe(pm) == [{"name": "greeter", "distribution": "test-plugin-greeter", "version": "1.2.3",
                             "hooks": ["admission_host_mutators"]}]


def test_all_installed_plugins_by_default(install_plugin):
    install_plugin("greeter", "greeter_plugin", GREETER)
    names = {name for name, plugin in get_plugin_manager().list_name_plugin()}
    assert {"greeter", "pod_deletion_cost", "eci_profile"} <= names


def test_enabled_list_loads_only_those():
    pm = get_plugin_manager(["pod_deletion_cost"])
    assert [name for name, _ in pm.list_name_plugin()] == ["pod_deletion_cost"]
    assert get_plugin_manager([]).list_name_plugin() == []


def test_unknown_plugin_is_an_error_naming_it():
    with pytest.raises(PluginError) as info:
        get_plugin_manager(["pod_deletion_cost", "no_such_plugin"])
    message = str(info.value)
    assert "unknown plugin(s): no_such_plugin" in message
    assert "installed:" in message and "pod_deletion_cost" in message


def test_a_plugin_that_fails_to_import_is_an_error_naming_it(install_plugin):
    install_plugin("broken", "broken_plugin", "import definitely_not_a_module_anywhere\n")
    with pytest.raises(PluginError) as info:
        get_plugin_manager(["broken"])
    assert "plugin 'broken' (broken_plugin) failed to load" in str(info.value)
    assert "definitely_not_a_module_anywhere" in str(info.value)


def test_a_plugin_implementing_an_unknown_hook_is_an_error_naming_it(install_plugin):
    install_plugin("typo", "typo_plugin", """
        from framework import hookimpl

        @hookimpl
        def admission_host_mutator(options):  # the hook is admission_host_mutators
            return []
    """)
    with pytest.raises(PluginError) as info:
        get_plugin_manager(["typo"])
    message = str(info.value)
    assert message.startswith("plugin 'typo' implements an unknown hook")
    assert "admission_host_mutator" in message


def test_a_hookimpl_with_arguments_the_hook_has_not_is_an_error():
    plugin = make_plugin("wrongargs", admission_host_mutators=lambda opts: [])
    with pytest.raises(PluginError, match="(?s)plugin 'wrongargs' cannot be registered.*opts"):
        get_plugin_manager([], extra=[plugin])


def test_addhooks_is_historic():
    """A plugin's own hookspecs exist before the others are validated, whatever the order."""
    specs = types.ModuleType("extra_specs")

    @hookspec(firstresult=True)
    def extra_greeting(name):
        """A hook added by a plugin."""

    specs.extra_greeting = extra_greeting
    adds = make_plugin("adds", admission_host_addhooks=lambda pluginmanager: pluginmanager.add_hookspecs(specs))
    uses = make_plugin("uses", extra_greeting=lambda name: f"hello {name}")
    pm = get_plugin_manager([], extra=[uses, adds])  # the implementation is registered first
    assert pm.hook.extra_greeting(name="x") == "hello x"

    later = []
    pm.register(make_plugin("late", admission_host_addhooks=lambda pluginmanager: later.append(pluginmanager)))
    assert later == [pm], "a plugin registered after the call still receives it"


def recorder(name, calls, **extra):
    def hook(hook_name):
        def fn(host, options):
            calls.append((name, hook_name, dict(options)))
            return extra.get(hook_name, [])
        return fn

    return make_plugin(name, **{h: hook(h) for h in ("admission_host_startup", "admission_host_watches",
                                                      "admission_host_mutators", "admission_host_controllers")})


def test_host_passes_each_plugin_its_own_options():
    calls = []
    config = Config(enabled_plugins=[], plugin_options={"one": {"a": 1}, "two": {"b": [2]}})
    Host(config, extra_plugins=[recorder("one", calls), recorder("two", calls), recorder("three", calls)])
    seen = {(name, hook): options for name, hook, options in calls}
    assert seen[("one", "admission_host_startup")] == {"a": 1}
    assert seen[("two", "admission_host_mutators")] == {"b": [2]}
    assert seen[("three", "admission_host_watches")] == {}
    # startup runs for every plugin before any watch is declared, in pluggy's order (last registered first).
    assert [(n, h) for n, h, _ in calls][:4] == [("three", "admission_host_startup"), ("two", "admission_host_startup"),
                                                  ("one", "admission_host_startup"), ("three", "admission_host_watches")]


def test_options_are_a_copy():
    def startup(options):
        options["mutated"] = True

    config = Config(enabled_plugins=[], plugin_options={"p": {"a": 1}})
    Host(config, extra_plugins=[make_plugin("p", admission_host_startup=startup)])
    assert config.plugin_options == {"p": {"a": 1}}


@pytest.mark.parametrize("hook", ["admission_host_startup", "admission_host_watches", "admission_host_mutators",
                                  "admission_host_controllers"])
def test_a_plugin_raising_in_a_declaration_hook_names_plugin_and_hook(hook):
    def fail(options):
        raise ValueError("option 'x' must be a number")

    with pytest.raises(PluginError) as info:
        Host(Config(enabled_plugins=[]), extra_plugins=[make_plugin("fussy", **{hook: fail})])
    assert str(info.value) == f"plugin 'fussy' failed in {hook}: ValueError(\"option 'x' must be a number\")"


def test_options_for_an_unknown_plugin_are_an_error():
    with pytest.raises(PluginError, match="config has options for unknown plugin 'ghost'"):
        Host(Config(enabled_plugins=[], plugin_options={"ghost": {"a": 1}}))


def test_options_for_an_installed_but_disabled_plugin_only_warn(caplog):
    with caplog.at_level(logging.WARNING):
        Host(Config(enabled_plugins=[], plugin_options={"pod_deletion_cost": {}}))
    assert "options for plugin 'pod_deletion_cost', which is not enabled" in caplog.text


def test_duplicate_watch_names_across_plugins_are_an_error():
    def watches():
        return [Watch(name="namespaces", resource="namespaces", kind="Namespace")]

    with pytest.raises(PluginError, match="watch 'namespaces' is declared by both 'a' and 'b'"):
        Host(Config(enabled_plugins=[]), extra_plugins=[make_plugin("a", admission_host_watches=watches),
                                                        make_plugin("b", admission_host_watches=watches)])


def test_duplicate_mutator_names_across_plugins_are_an_error():
    def mutators():
        return [Mutator(name="same", mutate=lambda req: None)]

    with pytest.raises(PluginError, match="mutator name 'same' is declared by plugins 'a' and 'b'"):
        Host(Config(enabled_plugins=[]), extra_plugins=[make_plugin("a", admission_host_mutators=mutators),
                                                        make_plugin("b", admission_host_mutators=mutators)])


@pytest.mark.parametrize("returned,message", [
    (lambda: Mutator(name="one", mutate=lambda req: None), r"returned one Mutator; return a list: \[Mutator"),
    (lambda: "pods", "returned str 'pods'; return a list of Mutator objects"),
])
def test_a_hook_returning_the_wrong_shape_names_the_plugin(returned, message):
    with pytest.raises(PluginError, match=f"plugin 'sloppy': admission_host_mutators {message}"):
        Host(Config(enabled_plugins=[]), extra_plugins=[make_plugin("sloppy", admission_host_mutators=returned)])


@pytest.mark.parametrize("fields,message", [
    ({"resources": "Pod"}, "resource 'Pod' must be a lowercase plural as in a webhook rule, e.g. 'pods'"),
    ({"resources": "pod/binding"}, "e.g. 'pods/binding'"),
    ({"operations": "create"}, "unknown operation 'create' \\(did you mean 'CREATE'\\?\\)"),
    ({"operations": "PATCH"}, "unknown operation 'PATCH'"),
    ({"group": "v1"}, "group 'v1' looks like a version"),
    ({"group": "apps/v1"}, "group 'apps/v1' looks like a version"),
])
def test_declarations_that_could_never_match_are_refused_with_a_hint(fields, message):
    def mutators():
        return [Mutator(name="m", mutate=lambda req: None, **fields)]

    with pytest.raises(PluginError, match=f"plugin 'sloppy' failed in admission_host_mutators: .*{message}"):
        Host(Config(enabled_plugins=[]), extra_plugins=[make_plugin("sloppy", admission_host_mutators=mutators)])


def test_declarations_of_the_wrong_type_are_an_error():
    with pytest.raises(PluginError, match="plugin 'sloppy': admission_host_mutators returned .*expected Mutator"):
        Host(Config(enabled_plugins=[]),
             extra_plugins=[make_plugin("sloppy", admission_host_mutators=lambda: [lambda req: None])])


def test_declarations_are_owned_by_their_plugin():
    calls = []
    mutator = Mutator(name="m", mutate=lambda req: None)
    watch = Watch(name="w", resource="nodes", kind="Node")
    host = Host(Config(enabled_plugins=[]), extra_plugins=[
        recorder("owner", calls, admission_host_mutators=[mutator], admission_host_watches=[watch])])
    assert host.pipeline.mutators[0].plugin == "owner"
    assert host.watches["w"].plugin == "owner"
    assert host.store("w").name == "w"


def test_methods_of_a_plugin_object_work_too():
    class Plugin:
        __name__ = "object_plugin"

        def __init__(self):
            self.started = None

        @hookimpl
        def admission_host_startup(self, host, options):
            self.started = (host, options)

    plugin = Plugin()
    host = Host(Config(enabled_plugins=[], plugin_options={"object_plugin": {"k": "v"}}), extra_plugins=[plugin])
    assert plugin.started == (host, {"k": "v"})


OPTIONED = '''
import dataclasses

from framework import hookimpl

CALLS = []


@dataclasses.dataclass
class Options:
    reason: str = "warming up"


@hookimpl
def admission_host_options():
    return Options


@hookimpl
def admission_host_ready(host, options):
    return options.reason


@hookimpl
def admission_host_explain(host, obj, options):
    return [f"{obj['metadata']['name']}: {options.reason}"]


@hookimpl
def admission_host_shutdown(host, options):
    CALLS.append(("shutdown", options.reason))
'''


def test_ready_explain_and_shutdown_receive_the_plugins_options(install_plugin, tmp_path, capsys, restore_logging):
    install_plugin("optioned", "optioned_plugin", OPTIONED)
    import optioned_plugin

    host = Host(Config(enabled_plugins=["optioned"], plugin_options={"optioned": {"reason": "cache cold"}}))
    assert host.readiness() == ["plugin optioned: cache cold"]
    host.stop()
    assert optioned_plugin.CALLS == [("shutdown", "cache cold")]
    # explain, as the command calls it
    from framework.cli import main

    (tmp_path / "pod.yaml").write_text("{apiVersion: v1, kind: Pod, metadata: {name: web, namespace: shop}, "
                                       "spec: {containers: [{name: a, image: nginx}]}}")
    (tmp_path / "config.yaml").write_text("plugins: {optioned: {reason: from the file}}\n")
    code = main(["explain", str(tmp_path / "pod.yaml"), "--plugins", "optioned",
                 "--config", str(tmp_path / "config.yaml")])
    assert code == 0 and "== optioned\n  web: from the file\n" in capsys.readouterr().out
    assert optioned_plugin.CALLS[-1] == ("shutdown", "from the file")


def test_implementations_without_the_options_argument_still_work():
    """``options`` was added to ready, explain and shutdown: pluggy passes an implementation only
    the arguments it names, so those written before keep working."""
    calls = []
    plugin = make_plugin("old", admission_host_ready=lambda host: "not yet",
                         admission_host_explain=lambda host, obj: [obj["kind"]],
                         admission_host_shutdown=lambda host: calls.append("shutdown"))
    host = Host(Config(enabled_plugins=[], plugin_options={"old": {"a": 1}}), extra_plugins=[plugin])
    assert host.readiness() == ["plugin old: not yet"]
    assert list(host.each_plugin("admission_host_explain", obj={"kind": "Pod"})) == [("old", ["Pod"])]
    host.stop()
    assert calls == ["shutdown"]


@pytest.mark.parametrize("name", ["pod-deletion-cost", "Pod_Deletion_Cost", "podDeletionCost"])
def test_a_plugin_name_spelt_another_way_gets_a_hint_and_the_installed_list(name):
    with pytest.raises(PluginError) as info:
        Host(Config(enabled_plugins=[], plugin_options={name: {"label": "x"}}))
    message = str(info.value)
    assert message.startswith(f"config has options for unknown plugin {name!r} (did you mean 'pod_deletion_cost'?); "
                              f"installed: ")
    assert {"eci_profile", "pod_deletion_cost"} <= set(message.split("installed: ")[1].split(", "))
    with pytest.raises(PluginError, match=f"unknown plugin\\(s\\): {name} \\(did you mean 'pod_deletion_cost'\\?\\)"):
        get_plugin_manager([name])


def test_options_of_an_unknown_plugin_list_the_installed_ones():
    with pytest.raises(PluginError) as info:
        Host(Config(enabled_plugins=[], plugin_options={"ghost": {"a": 1}}))
    assert "(did you mean" not in str(info.value)
    assert "; installed: " in str(info.value) and "pod_deletion_cost" in str(info.value)
