"""Small builders shared by the unit tests."""

from __future__ import annotations

import types

from framework import hookimpl


def make_plugin(name: str, **hooks) -> types.ModuleType:
    """A plugin module called ``name`` whose hookimpls are the given functions.

    ``make_plugin("p", admission_host_mutators=lambda: [...])`` — each function may take any of
    the hook's arguments (``host``, ``options``, ``pluginmanager``), as a real hookimpl would.
    """
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookimpl(fn))
    return module
