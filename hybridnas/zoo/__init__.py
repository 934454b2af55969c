"""Named architectures: registered specs, one module per family.

    >>> from hybridnas.zoo import get_spec, list_models
    >>> get_spec("convnext_tiny").pattern
    'C-C-C-C'

Each family module calls ``register(name, spec, ...)`` with the published
size so that a test parametrised over the registry checks every entry.
Importing this package does not import torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..spec import ArchSpec

__all__ = ["NamedArch", "register", "get_spec", "get_named", "list_models", "NAMED"]


@dataclass(frozen=True)
class NamedArch:
    name: str
    spec: ArchSpec
    params_m: float | None  # published parameter count (millions) at 224, 1000 classes
    gmacs: float | None  # published GMACs at 224x224
    resolution: int = 224
    paper: str = ""
    note: str = ""
    num_classes: int = 1000
    in_chans: int = 3


NAMED: dict[str, NamedArch] = {}


def register(name: str, spec: ArchSpec, params_m: float | None = None, gmacs: float | None = None,
             **kw) -> ArchSpec:
    if name in NAMED:
        raise KeyError(f"named architecture {name!r} registered twice")
    spec = spec.replace(name=name)
    spec.validate()
    NAMED[name] = NamedArch(name, spec, params_m, gmacs, **kw)
    return spec


def _load_families() -> None:
    from . import (coatnet, convnext, cvt, efficientformer, levit, maxvit, seed, swin,  # noqa: F401
                   temporal, vit)


def get_named(name: str) -> NamedArch:
    _load_families()
    try:
        return NAMED[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, NAMED, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown architecture {name!r}{hint} "
                       f"(`hybridnas models` lists them)") from None


def get_spec(name: str) -> ArchSpec:
    return get_named(name).spec


def list_models() -> list[str]:
    _load_families()
    return sorted(NAMED)
