"""Every hook the host calls, in the order of the host's life.

Every hook but ``addhooks`` and ``options`` is called plugin by plugin with that plugin's own
``options`` (its section ``plugins: {NAME: ...}`` of the config file), so an error can be blamed on
the plugin that raised it. An implementation takes the arguments it needs, by name: ``options``
was added to ``ready``, ``explain`` and ``shutdown`` later, and implementations without it work
as before.
"""

import pluggy

PROJECT = "admission_host"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(historic=True)
def admission_host_addhooks(pluginmanager):
    """Add a plugin's own hookspecs: ``pluginmanager.add_hookspecs(module)``.

    Historic: plugins registered later still receive it. Returns nothing.
    """


@hookspec
def admission_host_options():
    """Return this plugin's options as a dataclass (the class, not an instance), or None.

    Each field is an option: its key in the config file is the field's name in camelCase, its
    type the annotation, its help ``field(metadata={"help": ...})``. The host checks the plugin's
    section of the config file against it before any plugin starts (unknown keys, wrong types,
    missing required options: exit 2 naming the plugin), and the other hooks then receive an
    instance as ``options``. Without it they receive the section as a dict, unchecked.
    """


@hookspec
def admission_host_startup(host, options):
    """Validate ``options`` and prepare; raise to stop the host from starting.

    Called once per plugin before any watch starts. ``host`` is the running
    :class:`framework.host.Host` (``host.store(name)``, ``host.kube``, ``host.config``,
    ``host.pluginmanager``). Returns nothing.
    """


@hookspec
def admission_host_watches(host, options):
    """Return the :class:`framework.Watch` caches this plugin needs (an iterable, may be empty)."""


@hookspec
def admission_host_mutators(host, options):
    """Return the :class:`framework.Mutator` list of this plugin (an iterable, may be empty)."""


@hookspec
def admission_host_controllers(host, options):
    """Return the :class:`framework.Controller` loops to run on the elected leader only."""


@hookspec
def admission_host_ready(host, options):
    """Return ``None`` when this plugin is ready to serve, else a short reason string.

    Called on every ``GET /readyz`` (after all watches have synced); keep it cheap.
    """


@hookspec
def admission_host_explain(host, obj, options):
    """Explain, for ``admission-host explain``, what this plugin decides for ``obj`` and why.

    ``obj`` is the object as it would be admitted (a Pod, usually). Return a list of lines of
    text, or None when the plugin has nothing to say. Must not change anything.
    """


@hookspec
def admission_host_shutdown(host, options):
    """Release what ``startup`` acquired. Called once, after serving has stopped. Returns nothing."""
