"""Search spaces declared in YAML: named decisions over the architecture spec.

    >>> import hybridnas, hybridnas.spaces as spaces
    >>> space = spaces.load("stagewise", resolution=32)
    >>> spec = space.sample(0)                   # or space.suggest(optuna_trial)
    >>> space.decode(space.encode(spec)) == spec
    True
    >>> bool(spaces.load("stagewise").contains(hybridnas.get_spec("coatnet_0")))
    True
    >>> space.references()["coatnet_0"].stem.strides   # the proxy drops the stem stride
    (1, 1)

``load(name_or_path, resolution=None, width_mult=None, depth_mult=None)``
finds ``<name>.yaml`` on the search path: ``$HYBRIDNAS_SPACES`` (a
``os.pathsep``-separated list), the repository's ``search_spaces/`` next to
the package (in a checkout), then the package data folder
``hybridnas/search_spaces/`` (a wheel built with the symlink
``hybridnas/search_spaces -> ../search_spaces`` carries the files there).

The file format (decisions, derived values, constraints) and how a space
is scaled to a proxy resolution are described in ``docs/SPACES.md``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._io import parse_yaml, read_text
from ..spec import SPEC_LIMITS
from ._nodes import Choice, Dim, FloatRange, IntRange, OneOf, Parser, SpaceError
from .space import Constraints, Containment, Space, count_params, format_size

__all__ = [
    "Choice",
    "Constraints",
    "Containment",
    "Dim",
    "FloatRange",
    "IntRange",
    "OneOf",
    "Space",
    "SpaceError",
    "count_params",
    "format_size",
    "check_option",
    "list_spaces",
    "load",
    "search_path",
]

_TOP_KEYS = {"name", "description", "dims", "reference_resolution", "resolution", "width_mult",
             "depth_mult", "proxy", "named", "arch", "data", "constraints"}


def search_path() -> list[Path]:
    """Folders searched for ``<name>.yaml``, in order."""
    paths = [Path(p) for p in os.environ.get("HYBRIDNAS_SPACES", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
    repo = here.parent.parent
    if (repo / "pyproject.toml").is_file():  # a checkout (not site-packages/search_spaces)
        paths.append(repo / "search_spaces")
    paths.append(here.parent / "search_spaces")  # installed package data
    return paths


def list_spaces() -> list[str]:
    """Names of the space files on the search path."""
    names = set()
    for folder in search_path():
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def _find(name_or_path: str | os.PathLike) -> Path:
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        path = Path(text)
        if not path.is_file():
            raise SpaceError(f"{text}: no such space file")
        return path
    for folder in search_path():
        path = folder / f"{text}.yaml"
        if path.is_file():
            return path
    known = list_spaces()
    import difflib

    close = difflib.get_close_matches(text, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise SpaceError(f"unknown space {text!r}{hint} (known: {', '.join(known) or 'none'}; "
                     f"`hybridnas spaces` lists them)")


def _read(path: Path) -> dict:
    raw = parse_yaml(read_text(path, SpaceError), str(path), SpaceError)
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: expected a mapping with arch/stages, got {type(raw).__name__}")
    return raw


#: The largest ``width_mult``/``depth_mult`` a space accepts.
MAX_MULTIPLIER = 64.0


def check_option(key: str, value: Any, where: str = "space option") -> None:
    """Raise ``SpaceError`` unless ``key=value`` is a valid option of ``load``
    (``width_mult`` or ``depth_mult``: a positive finite number, at most
    ``MAX_MULTIPLIER``). ``search`` checks ``--space-option`` with this before
    anything runs."""
    if key not in ("width_mult", "depth_mult"):
        raise SpaceError(f"{where}: unknown space option {key!r} (known: depth_mult, width_mult)")
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not 0 < value <= MAX_MULTIPLIER):
        raise SpaceError(f"{where}: {key}={value!r} must be a number in (0, {MAX_MULTIPLIER:g}]")


def load(name_or_path: str | os.PathLike, resolution: int | None = None,
         width_mult: float | None = None, depth_mult: float | None = None) -> Space:
    """Load a space by name (``"stagewise"``) or from a YAML file path.

    ``resolution`` is the input size the decoded architectures are built for
    (default: the file's ``resolution``, else its reference resolution);
    ``width_mult``/``depth_mult`` shrink or grow them (see "Proxy scale").
    A malformed file raises ``SpaceError`` naming the file, the key path and
    what is wrong.
    """
    path = _find(name_or_path)
    raw = _read(path)
    where = str(path)
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise SpaceError(f"{where}: unknown top-level key(s) {sorted(unknown)}; allowed: "
                         f"{sorted(_TOP_KEYS)}")
    if "arch" not in raw:
        raise SpaceError(f"{where}: missing key 'arch' (the architecture template)")
    dims = raw.get("dims", 2)
    if dims not in (1, 2):
        raise SpaceError(f"{where}: dims={dims!r} must be 1 or 2")

    max_res = SPEC_LIMITS.max_sequence if dims == 1 else SPEC_LIMITS.max_resolution

    def positive_int(key: str, default: Any, given: Any = None) -> Any:
        v = given if given is not None else raw.get(key, default)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise SpaceError(f"{where}: {key}={v!r} must be a positive integer")
        if v is not None and v > max_res:
            raise SpaceError(f"{where}: {key}={v} is over the limit of {max_res}")
        return v

    def multiplier(key: str, given: float | None) -> float:
        v = given if given is not None else raw.get(key, 1.0)
        check_option(key, v, where)
        return float(v)

    for key in ("name", "description"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise SpaceError(f"{where}: {key} must be a string, got {type(raw[key]).__name__}")
    if len(raw.get("name") or "") > SPEC_LIMITS.max_name_chars:
        raise SpaceError(f"{where}: name is {len(raw['name'])} characters long, over the limit "
                         f"of {SPEC_LIMITS.max_name_chars}")
    reference = positive_int("reference_resolution", 224 if dims == 2 else None)
    if reference is None:
        raise SpaceError(f"{where}: reference_resolution is required for a 1-D space")
    res = positive_int("resolution", None, resolution)
    proxy = raw.get("proxy") or {}
    if not isinstance(proxy, dict) or set(proxy) - {"min_grid"}:
        raise SpaceError(f"{where}: proxy: expected {{min_grid: N}}, got {proxy!r}")
    min_grid = proxy.get("min_grid", 1)
    if not isinstance(min_grid, int) or isinstance(min_grid, bool) or min_grid < 0:
        raise SpaceError(f"{where}: proxy.min_grid={min_grid!r} must be an integer >= 0")
    named = raw.get("named") or []
    if not isinstance(named, list) or not all(isinstance(n, str) for n in named):
        raise SpaceError(f"{where}: named: expected a list of architecture names, got {named!r}")
    if named:
        from ..zoo import list_models

        known = set(list_models())
        for n in named:
            if n not in known:
                raise SpaceError(f"{where}: named: {n!r} is not a registered architecture "
                                 f"(`hybridnas models` lists them)")

    def include(name: str, at: str) -> Any:
        other = _read(_find(name))
        if "arch" not in other:
            raise SpaceError(f"{at}: space {name!r} has no 'arch' section to include")
        if other.get("dims", 2) != dims:
            raise SpaceError(f"{at}: space {name!r} is {other.get('dims', 2)}-D, this one {dims}-D")
        return other["arch"]

    parser = Parser(where, include)
    arch = parser.arch(raw["arch"])
    data = parser.data(raw["data"]) if raw.get("data") is not None else None
    constraints = Constraints.parse(raw.get("constraints"), where)
    space = Space(name=str(raw.get("name") or path.stem), path=where, arch=arch, data=data,
                  dims=dims, reference_resolution=reference, resolution=res, min_grid=min_grid,
                  named=named, constraints=constraints,
                  description=" ".join(str(raw.get("description", "")).split()),
                  width_mult=multiplier("width_mult", width_mult),
                  depth_mult=multiplier("depth_mult", depth_mult))
    _smoke(space)
    return space


def _smoke(space: Space) -> None:
    """Decode the first value of every decision, so that a template that
    cannot form a spec at all (a bad ref, a missing field) fails at load."""
    from ..spec import SpecError

    def first(dim: Dim) -> Any:
        vals = dim.values()
        return vals[0] if vals else dim.low  # type: ignore[attr-defined]

    from ._nodes import build

    try:
        space._finish(build(space.arch, first))
    except SpecError as e:
        raise SpaceError(f"{space.path}: the template does not form a spec: {e}") from None

    def last(dim: Dim) -> Any:
        vals = dim.values()
        return vals[-1] if vals else dim.high  # type: ignore[attr-defined]

    # The largest values of the decisions: a range up to 10**9 channels must
    # fail here, not as one trial after another that cannot be built.
    try:
        largest = space._finish(build(space.arch, last))
    except (SpecError, SpaceError):
        return  # e.g. heads that do not divide the largest width: checked per sample
    over = largest.limit_problems()
    if over:
        raise SpaceError(f"{space.path}: the largest values of its decisions go over a limit: "
                         f"{over[0]}")
