"""The plugin manager: hookspecs, entry points, the enable list, validation."""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Iterable, List, Optional

import pluggy

from framework import hookspecs, options

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = hookspecs.PROJECT


class PluginError(Exception):
    """A plugin is unknown or broken; the message names it."""


def installed_plugins() -> dict:
    """Entry points of the group ``admission_host``, by name."""
    eps = importlib.metadata.entry_points()
    selected = eps.select(group=ENTRY_POINT_GROUP) if hasattr(eps, "select") else eps.get(ENTRY_POINT_GROUP, [])
    return {ep.name: ep for ep in selected}


def get_plugin_manager(enabled: Optional[Iterable[str]] = None, extra: Iterable = ()) -> pluggy.PluginManager:
    """Build a plugin manager with the host's hookspecs and the enabled plugins.

    ``enabled`` lists entry-point names (``None``: every installed plugin); ``extra`` are plugin
    objects registered directly (tests, embedding), named by their ``__name__`` if they have one.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.distributions = {}  # plugin name -> (distribution, version), reported by GET /plugins
    # Historic: replayed to every plugin as it registers, so plugins' own hookspecs exist
    # before check_pending validates the hookimpls of other plugins against them.
    pm.hook.admission_host_addhooks.call_historic(kwargs={"pluginmanager": pm})
    available = installed_plugins()
    names = sorted(available) if enabled is None else list(dict.fromkeys(enabled))
    unknown = [n + options.did_you_mean(n, available) for n in names if n not in available]
    if unknown:
        raise PluginError(f"unknown plugin(s): {', '.join(unknown)}; installed: {', '.join(sorted(available)) or 'none'}")
    for name in names:
        ep = available[name]
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(f"plugin {name!r} ({ep.value}) failed to load: {exc!r}") from exc
        _register(pm, plugin, name, ep.dist)
    for plugin in extra:
        _register(pm, plugin, getattr(plugin, "__name__", None) or repr(plugin), None)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginError(f"plugin {name!r} implements an unknown hook: {exc}") from exc
    return pm


def _register(pm: pluggy.PluginManager, plugin, name: str, dist) -> None:
    try:
        pm.register(plugin, name=name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise PluginError(f"plugin {name!r} cannot be registered: {exc}") from exc
    if dist is not None:
        pm.distributions[name] = (dist.metadata["Name"], dist.version)


def declared_options(name: str) -> Optional[type]:
    """The options dataclass an installed plugin declares, or None, read without enabling it:
    its entry point is loaded and registered with a plugin manager of its own, where no other hook
    is called. :class:`PluginError` when it does not load."""
    ep = installed_plugins()[name]
    try:
        plugin = ep.load()
    except Exception as exc:
        raise PluginError(f"plugin {name!r} ({ep.value}) failed to load: {exc!r}") from exc
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    _register(pm, plugin, name, None)
    impl = next(iter(pm.hook.admission_host_options.get_hookimpls()), None)
    return None if impl is None else impl.function()


def describe(pm: pluggy.PluginManager) -> list:
    """Loaded plugins with their version and the hooks each implements (for ``GET /plugins``)."""
    out = []
    for name, plugin in sorted(pm.list_name_plugin()):
        if plugin is None:
            continue
        project, version = getattr(pm, "distributions", {}).get(name, (None, None))
        entry = {
            "name": name,
            "distribution": project,
            "version": version,
            "hooks": sorted(caller.name for caller in (pm.get_hookcallers(plugin) or [])),
        }
        impl = next((i for i in pm.hook.admission_host_options.get_hookimpls() if i.plugin is plugin), None)
        if impl is not None:
            try:
                entry["options"] = options.describe(impl.function())
            except Exception as exc:  # listed all the same: this is where one looks for the mistake
                entry["optionsError"] = f"{exc!r}"
        out.append(entry)
    return out


def check(pm: pluggy.PluginManager) -> List[str]:
    """What is wrong with the loaded plugins' declarations, checked without any options (for
    ``admission-host plugins --check``, the build check of an image).

    Loading them (``get_plugin_manager``) has already checked that each entry point imports and
    that its hookimpls are hooks the host (or another plugin) declares, with arguments those hooks
    have. Here: each plugin implements at least one hook (an entry point that names the wrong
    module loads, and does nothing), and its options declaration is well formed (``options.check``).
    Whether the deployment's options fit is for ``admission-host plugins --config FILE``: that
    needs the options, and so do the watches, mutators and controllers the plugins declare.
    """
    problems = []
    for name, plugin in sorted(pm.list_name_plugin()):
        if plugin is None:
            continue
        if not pm.get_hookcallers(plugin):
            what = getattr(plugin, "__name__", None) or type(plugin).__name__
            problems.append(f"plugin {name!r} ({what}) implements no hook: its entry point should name the "
                            f"module with the @hookimpl functions")
            continue
        impl = next((i for i in pm.hook.admission_host_options.get_hookimpls() if i.plugin is plugin), None)
        if impl is None:
            continue
        try:
            declared = impl.function()
        except Exception as exc:
            problems.append(f"plugin {name!r}: admission_host_options failed: {exc!r}")
            continue
        if declared is not None:
            problems += [f"plugin {name!r}: {problem}" for problem in options.check(declared)]
    return problems
