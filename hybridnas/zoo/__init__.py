"""Named architectures: registered specs, one module per family.

    >>> from hybridnas.zoo import get_spec, list_models
    >>> get_spec("convnext_tiny").pattern
    'C-C-C-C'

Each family module calls ``register(name, spec, ...)`` with the published
size and the size hybridnas counts (``counted``: stored, so that listing the
zoo needs no model build); tests parametrised over the registry check both
for every entry. Importing this package does not import torch.
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
    # (params, MACs) as count_size() gives them, stored with the entry so listings
    # need no torch; tests/test_models.py checks them against a fresh count
    counted: tuple[int, int] | None = None


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


def list_models(pattern: str = "") -> list[str]:
    """Registered names, sorted; ``pattern`` filters them with shell wildcards
    (``"coat*"``, ``"vit_c_?gf"``; case-insensitive, as timm's ``list_models``)."""
    import fnmatch

    _load_families()
    names = sorted(NAMED)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]
    return names
