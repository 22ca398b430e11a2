"""Wires plugins, caches, the admission pipeline and leader-only controllers together."""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional

import pluggy

from framework import options
from framework.admission.pipeline import Pipeline
from framework.config import Config
from framework.kube.client import KubeClient
from framework.kube.labels import match_fields
from framework.kube.leader import LeaderElector
from framework.kube.reflector import Reflector, Transform
from framework.kube.store import Store
from framework.metrics import Metrics
from framework.plugins import PluginError, declared_options, get_plugin_manager, installed_plugins
from framework.types import Controller, Mutator, Watch

log = logging.getLogger("admission_host")


class Host:
    """One admission host. ``kube=None`` runs offline: caches are filled with :meth:`load_objects`
    and controllers do not run.

    Life: ``Host(...)`` loads plugins and calls their declaration hooks; :meth:`start` starts the
    watches and leader election; :meth:`stop` undoes it. Plugins reach caches with :meth:`store`.
    """

    def __init__(self, config: Optional[Config] = None, kube: Optional[KubeClient] = None, *,
                 pluginmanager: Optional[pluggy.PluginManager] = None, extra_plugins: Iterable = ()):
        self.config = config or Config()
        self.kube = kube
        self.metrics = Metrics()
        if isinstance(kube, KubeClient):
            kube.metrics = self.metrics
        self.pluginmanager = pluginmanager or get_plugin_manager(self.config.enabled_plugins, extra_plugins)
        self.stores: Dict[str, Store] = {}
        self.watches: Dict[str, Watch] = {}
        self.reflectors: List[Reflector] = []
        self.controllers: List[Controller] = []
        self.elector: Optional[LeaderElector] = None
        self._controller_stop: Optional[threading.Event] = None
        self._controller_threads: List[threading.Thread] = []
        self._started = self._stopped = False
        # Host features outside plugins (the serving certificate) add ``() -> reason or None`` here.
        self.readiness_checks: List[Callable[[], Optional[str]]] = []
        self._options: Dict[str, Any] = {}
        self._check_options()
        for _ in self.each_plugin("admission_host_startup"):
            pass
        for plugin, watches in self.each_plugin("admission_host_watches"):
            for watch in _listed(watches, Watch, plugin, "admission_host_watches"):
                self._add_watch(_own(watch, Watch, plugin, "admission_host_watches"))
        mutators = [_own(m, Mutator, plugin, "admission_host_mutators")
                    for plugin, ms in self.each_plugin("admission_host_mutators")
                    for m in _listed(ms, Mutator, plugin, "admission_host_mutators")]
        _check_unique(mutators)
        try:
            self.pipeline = Pipeline(mutators, self.metrics, self.config.admission_deadline_seconds,
                                     self.config.mutator_budget_seconds)
        except ValueError as exc:
            raise PluginError(str(exc)) from exc
        self.controllers = [_own(c, Controller, plugin, "admission_host_controllers")
                            for plugin, cs in self.each_plugin("admission_host_controllers")
                            for c in _listed(cs, Controller, plugin, "admission_host_controllers")]

    # -- plugins ---------------------------------------------------------------------------------
    def _check_options(self) -> None:
        loaded = {name for name, _ in self.pluginmanager.list_name_plugin()}
        installed = installed_plugins()
        known = sorted(loaded | set(installed))
        for name in self.config.plugin_options:
            if name in loaded:
                continue
            if name not in installed:  # a misspelt name would otherwise drop its options silently
                raise PluginError(f"config has options for unknown plugin {name!r}{options.did_you_mean(name, known)}; "
                                  f"installed: {', '.join(known) or 'none'}")
            self._check_disabled_options(name)
        # Declared options are checked here, for every plugin, before any of them starts.
        for name, declared in self.each_plugin("admission_host_options"):
            if declared is None:
                continue
            try:
                self._options[name] = options.parse(declared, self.config.options_for(name))
            except options.OptionsError as exc:
                raise PluginError(f"plugin {name!r}: {exc}") from None

    def _check_disabled_options(self, name: str) -> None:
        """Options of an installed plugin that is not enabled: checked all the same, so that a
        mistake shows now rather than on the day the plugin is enabled, but only reported, since
        a plugin that does not run cannot break this host."""
        try:
            declared = declared_options(name)
            if declared is not None:
                options.parse(declared, self.config.options_for(name))
        except Exception as exc:  # OptionsError, a plugin that fails to load or to declare
            problem = str(exc) if isinstance(exc, (options.OptionsError, PluginError)) else repr(exc)
            log.warning("config has options for plugin %r, which is not enabled; enabling it will fail: %s",
                        name, problem)
            return
        log.warning("config has options for plugin %r, which is not enabled; they are %s", name,
                    "valid, and unused until it is" if declared is not None else
                    "unused until it is (it declares none to check them against)")

    def options_of(self, plugin: str) -> Any:
        """What a plugin's hooks receive as ``options``: an instance of its declared options
        dataclass, or (undeclared) its section of the config file as a dict."""
        found = self._options.get(plugin)
        return self.config.options_for(plugin) if found is None else found

    def each_plugin(self, hook_name: str, on_error: Optional[Callable[[str, Exception], Any]] = None,
                    reverse: bool = False, **kwargs):
        """Call a hook plugin by plugin, yielding ``(plugin name, result)``: the one way the host
        calls its hooks. The order is pluggy's own (``tryfirst``/``trylast``, then the plugin
        registered last first); ``reverse`` for teardown. Each plugin gets its own ``options``.
        An exception becomes a :class:`PluginError` naming the plugin, unless ``on_error(name,
        exc)`` gives the result to yield instead."""
        pm = self.pluginmanager
        impls = [i for i in getattr(pm.hook, hook_name).get_hookimpls() if not (i.hookwrapper or i.wrapper)]
        for impl in (impls if reverse else reversed(impls)):
            name = pm.get_name(impl.plugin)
            available = {"host": self, **kwargs}
            if "options" in impl.argnames:
                available["options"] = self.options_of(name)
            try:
                result = impl.function(**{arg: available[arg] for arg in impl.argnames})
            except PluginError:
                raise
            except Exception as exc:
                if on_error is None:
                    raise PluginError(f"plugin {name!r} failed in {hook_name}: {exc!r}") from exc
                result = on_error(name, exc)
            yield name, result

    def _add_watch(self, watch: Watch) -> None:
        if watch.name in self.watches:
            first, second = sorted((self.watches[watch.name].plugin, watch.plugin))
            raise PluginError(f"watch {watch.name!r} is declared by both {first!r} and {second!r}")
        self.watches[watch.name] = watch
        self.stores[watch.name] = Store(watch.name, watch.indexers)

    def store(self, name: str) -> Store:
        """The cache of the watch called ``name``."""
        return self.stores[name]

    # -- offline caches --------------------------------------------------------------------------
    def load_objects(self, objects: Iterable[dict]) -> List[dict]:
        """Fill caches from objects instead of the API server; returns the objects no watch took."""
        by_kind: Dict[tuple, List[Watch]] = {}
        for watch in self.watches.values():
            by_kind.setdefault((watch.group, watch.kind), []).append(watch)
        filled: Dict[str, List[dict]] = {name: [] for name in self.watches}
        # As the reflector applies them: a result that cannot be cached is refused, logged and counted.
        transforms = {name: Transform(watch, self.metrics) for name, watch in self.watches.items()}
        unused = []
        for obj in objects:
            api_version = obj.get("apiVersion") or ""
            group = api_version.rpartition("/")[0]
            taken = False
            for watch in by_kind.get((group, obj.get("kind")), ()):
                meta = obj.get("metadata") or {}
                if watch.namespace and meta.get("namespace") != watch.namespace:
                    continue
                if watch.label_selector and not _match_label_string(watch.label_selector, meta.get("labels")):
                    continue
                if not match_fields(watch.field_selector, obj):
                    continue
                kept = transforms[watch.name](obj)
                if kept is not None:
                    filled[watch.name].append(kept)
                taken = True
            if not taken:
                unused.append(obj)
        for name, objs in filled.items():
            self.stores[name].replace(objs)
        return unused

    # -- running ---------------------------------------------------------------------------------
    def start(self, watches: bool = True, controllers: bool = True) -> None:
        """Start watches and (through leader election) controllers.

        Offline, or with ``watches=False`` (caches filled by :meth:`load_objects`), the caches
        are marked synced as they are.
        """
        if self._started:
            return
        self._started = True
        if self.kube is None or not watches:
            for store in self.stores.values():
                if not store.has_synced():
                    store.replace([])
        else:
            for name, watch in self.watches.items():
                reflector = Reflector(self.kube, watch, self.stores[name], metrics=self.metrics,
                                      watch_timeout=self.config.watch_timeout_seconds)
                reflector.start()
                self.reflectors.append(reflector)
        if not self.controllers or self.kube is None or not controllers:
            return  # controllers act on the API server: offline there is none
        if self.config.leader_election:
            self.elector = LeaderElector(self.kube, self.config.lease_namespace, self.config.lease_name,
                                         self.config.identity, on_started=self._start_controllers,
                                         on_stopped=self._stop_controllers)
            self.elector.start()
        else:
            self._start_controllers()

    def _start_controllers(self) -> None:
        self.metrics.leader.set(1)
        self._controller_stop = stop = threading.Event()
        self._controller_threads = []
        for controller in self.controllers:
            thread = threading.Thread(target=self._run_controller, args=(controller, stop),
                                      name=f"controller-{controller.name}", daemon=True)
            thread.start()
            self._controller_threads.append(thread)

    def _run_controller(self, controller: Controller, stop: threading.Event) -> None:
        # Wait for the caches first: a controller acting on a half-filled cache makes wrong calls.
        for store in self.stores.values():
            while not stop.is_set() and not store.wait_synced(1.0):
                pass
        while not stop.is_set():
            try:
                controller.run(stop)
                return
            except Exception:
                log.exception("controller %s (plugin %s) failed; restarting it in 5s", controller.name,
                              controller.plugin)
                stop.wait(5)

    def _stop_controllers(self) -> None:
        self.metrics.leader.set(0)
        if self._controller_stop is not None:
            self._controller_stop.set()
        for thread in self._controller_threads:
            thread.join(timeout=5)
        self._controller_threads = []

    def is_leader(self) -> bool:
        return bool(self._controller_threads) and not (self._controller_stop and self._controller_stop.is_set())

    def readiness(self) -> List[str]:
        """Why this host is not ready yet (an empty list when it is)."""
        reasons = [reason for reason in (check() for check in self.readiness_checks) if reason]
        reasons += [f"watch {name} has not synced" for name, s in self.stores.items() if not s.has_synced()]
        if reasons:
            return reasons
        for name, reason in self._ready_results():
            if reason:
                reasons.append(f"plugin {name}: {reason}")
        return reasons

    def _ready_results(self):
        return self.each_plugin("admission_host_ready", on_error=lambda name, exc: f"readiness check failed: {exc!r}")

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.elector is not None:
            self.elector.stop(release=True)
        self._stop_controllers()
        for reflector in self.reflectors:
            reflector.stop()
        # Plugin by plugin, the reverse of startup: one failing must not keep the others from cleaning up.
        for _ in self.each_plugin("admission_host_shutdown", reverse=True, on_error=lambda name, exc: log.error(
                "plugin %s failed in admission_host_shutdown", name, exc_info=exc)):
            pass


def _listed(value, cls, plugin: str, hook: str) -> list:
    """A declaration hook's answer: a list (or tuple) of ``cls``, or None."""
    if value is None:
        return []
    if isinstance(value, cls):
        raise PluginError(f"plugin {plugin!r}: {hook} returned one {cls.__name__}; return a list: "
                          f"[{cls.__name__}(...)]")
    if not isinstance(value, (list, tuple)):
        raise PluginError(f"plugin {plugin!r}: {hook} returned {type(value).__name__} {value!r}; "
                          f"return a list of {cls.__name__} objects")
    return list(value)


def _check_unique(mutators) -> None:
    seen: Dict[str, str] = {}
    for m in mutators:
        if m.name in seen:
            where = ("plugins {!r} and {!r}".format(*sorted((seen[m.name], m.plugin))) if seen[m.name] != m.plugin
                     else f"plugin {m.plugin!r} twice")
            raise PluginError(f"mutator name {m.name!r} is declared by {where}; mutator names must be unique")
        seen[m.name] = m.plugin


def _own(item, cls, plugin: str, hook: str):
    if not isinstance(item, cls):
        raise PluginError(f"plugin {plugin!r}: {hook} returned {item!r}, expected {cls.__name__} objects")
    if item.plugin:
        return item
    return dataclasses.replace(item, plugin=plugin)


def _match_label_string(selector: str, labels) -> bool:
    """Equality-based label selector strings (``a=b,c!=d,e``) for offline caches."""
    labels = labels or {}
    for term in selector.split(","):
        term = term.strip()
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term and term not in labels:
            return False
    return True

