"""hybridnas: neural architecture search over hybrid CNN/Transformer spaces.

``import hybridnas`` is cheap: torch and the heavy parts load on first use.

    >>> import hybridnas
    >>> model = hybridnas.create_model("coatnet_0", num_classes=10)
    >>> hybridnas.list_models()[:3]
    ['coatnet_0', 'coatnet_style', 'convnext_tiny']
"""
from __future__ import annotations

from .spec import ArchSpec, HeadSpec, SpecError, StageSpec, StemSpec

__version__ = "0.1.0"

__all__ = [
    "ArchSpec", "StemSpec", "StageSpec", "HeadSpec", "SpecError",
    "create_model", "build_model", "list_models", "get_spec", "cost", "load_run", "load", "run_search",
]


def list_models(pattern: str = "") -> list[str]:
    """Names of the registered architectures, optionally filtered by a shell
    wildcard such as ``"coat*"``."""
    from .zoo import list_models as _list

    return _list(pattern)


def get_spec(name_or_path) -> ArchSpec:
    """A named architecture's spec, or a spec read from a YAML/JSON file."""
    import os

    if isinstance(name_or_path, ArchSpec):
        return name_or_path
    name = str(name_or_path)
    if os.path.isdir(name) and os.path.exists(os.path.join(name, "spec.yaml")):
        name = os.path.join(name, "spec.yaml")
    if name.endswith((".yaml", ".yml", ".json")) or os.path.exists(name):
        return ArchSpec.load(name)
    from .zoo import get_spec as _get

    return _get(name)


def create_model(name_or_spec, num_classes: int = 1000, in_chans: int = 3,
                 drop_path_rate: float = 0.0):
    """Build a model from a registered name, a spec file path or an ``ArchSpec``."""
    from .builder import build_model as _build

    return _build(get_spec(name_or_spec), num_classes=num_classes, in_chans=in_chans,
                  drop_path_rate=drop_path_rate)


def build_model(spec: ArchSpec, num_classes: int = 1000, in_chans: int = 3,
                drop_path_rate: float = 0.0):
    from .builder import build_model as _build

    return _build(spec, num_classes=num_classes, in_chans=in_chans, drop_path_rate=drop_path_rate)


def cost(model_or_spec, input_size=224, **kw):
    from .complexity import cost as _cost

    return _cost(model_or_spec, input_size, **kw)


def load_run(path):
    """Load a search run directory into a pandas DataFrame (one row per trial)."""
    from .rundir import load_run as _load_run

    return _load_run(path)


def run_search(*args, **kwargs):
    """Run (or resume) a search with checkpoints and the dashboard
    (``hybridnas.search.run_search`` with ``hybridnas.app.search_hooks()``)."""
    from .app import run_search as _run

    return _run(*args, **kwargs)


def load(path, map_location="cpu"):
    """Load an exported model folder: the module with its weights."""
    from .export import load as _load

    return _load(path, map_location=map_location)
