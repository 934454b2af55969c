"""Plug-ins: rooms that extend the core by registering themselves.

The core (builder, data registry) never imports a plug-in by name in code;
it calls ``load_plugins()`` before a registry lookup, which imports each
plug-in module once, and the module registers its datasets (with
``hybridnas.data.register_dataset``) and its network classes (with
``register_network`` here). The built-in plug-in is ``hybridnas.temporal``;
installed packages add theirs through the ``hybridnas.plugins`` entry-point
group. This module imports neither torch nor any plug-in at import time.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ["BUILTIN_PLUGINS", "load_plugins", "register_network", "network_for"]

#: Plug-ins shipped with hybridnas (module names, imported on first use).
BUILTIN_PLUGINS = ("hybridnas.temporal",)
ENTRY_POINT_GROUP = "hybridnas.plugins"

_loaded = False
# spec feature -> a function returning the network class that builds such specs
_NETWORKS: dict[str, Callable[[], Any]] = {}


def load_plugins() -> None:
    """Import every plug-in once (built-in, then entry points)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILTIN_PLUGINS:
        importlib.import_module(name)
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.value not in BUILTIN_PLUGINS:
            ep.load()


def register_network(feature: str, loader: Callable[[], Any]) -> None:
    """Build specs that carry ``feature`` (e.g. ``"assets"``) with the class
    ``loader()`` returns (called lazily, so registering imports no torch)."""
    _NETWORKS[feature] = loader


def network_for(feature: str):
    """The network class registered for a spec ``feature`` (KeyError naming it if none)."""
    load_plugins()
    if feature not in _NETWORKS:
        raise KeyError(f"no plug-in builds specs with {feature}=True (registered: "
                       f"{sorted(_NETWORKS) or 'none'})")
    return _NETWORKS[feature]()
