"""``hybridnas spaces``, ``hybridnas sample`` and ``hybridnas contains``."""
from __future__ import annotations

import argparse
import json

from .._text import table as _table


def _load(args: argparse.Namespace):
    from . import load

    return load(args.space, resolution=getattr(args, "resolution", None),
                width_mult=getattr(args, "width_mult", None),
                depth_mult=getattr(args, "depth_mult", None))


def spaces_info(resolution: int | None = None) -> list[dict]:
    """One row per space file: name, size, decisions, named architectures."""
    from . import format_size, list_spaces, load

    rows = []
    for name in list_spaces():
        space = load(name, resolution=resolution)
        rows.append({"name": name, "size": format_size(space.size()),
                     "decisions": len(space.dimensions), "named": space.named(),
                     "dims": space.dims, "description": space.description})
    return rows


def containment_matrix() -> dict[str, dict[str, bool | None]]:
    """architecture -> space -> contained (None where the dims differ), for
    every registered architecture and every space file."""
    from .. import get_spec, list_models
    from . import list_spaces, load

    loaded = [load(name) for name in list_spaces()]
    out: dict[str, dict[str, bool | None]] = {}
    for arch in list_models():
        spec = get_spec(arch)
        out[arch] = {s.name: (bool(s.contains(spec)) if spec.dims == s.dims else None)
                     for s in loaded}
    return out


def cmd_spaces(args: argparse.Namespace) -> int:
    if args.matrix:
        matrix = containment_matrix()
        names = list(next(iter(matrix.values()), {}))
        print("| architecture | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for arch, row in matrix.items():
            cells = ["-" if v is None else "yes" if v else "" for v in row.values()]
            print(f"| {arch} | " + " | ".join(cells) + " |")
        return 0
    if args.space:
        from . import format_size

        space = _load(args)
        print(f"{space.name}  ({space.path})  {space.dims}-D, size {format_size(space.size())}, "
              f"resolution {space.resolution} (reference {space.reference_resolution}, "
              f"proxy min_grid {space.min_grid})")
        if space.description:
            print(space.description)
        rows = [[d.label, d.describe(), d.condition or "always"] for d in space.dimensions]
        print(_table(rows, ["label", "values", "when"]))
        cons = space.constraints.describe()
        if cons:
            print("constraints: " + "; ".join(cons))
        print("named: " + (", ".join(space.named()) or "none"))
        return 0
    rows = [[r["name"], r["size"], r["decisions"], f"{r['dims']}-D", ", ".join(r["named"]) or "-"]
            for r in spaces_info(args.resolution)]
    print(_table(rows, ["space", "size", "decisions", "dims", "named architectures contained"]))
    return 0


def describe_spec(spec) -> str:
    """One line per part: ``stem conv 64x64 /2`` then ``mbconv x2 w96 /2 k3 ...``."""
    st = spec.stem
    lines = [f"stem {st.kind}" + ("" if st.kind == "none" else
                                  f" {'x'.join(map(str, st.widths))} k{st.kernel} /{st.reduction}"
                                  + (f" proj {st.proj}" if st.proj else ""))]
    for i, s in enumerate(spec.stages):
        extra = " ".join(f"{k}={v}" for k, v in s.params().items()
                         if v not in (None, False) and k not in ("norm", "act"))
        lines.append(f"stages[{i}] {s.block} x{s.depth} w{s.width} /{s.stride} {extra}")
    h = spec.head
    lines.append(f"head {h.pool} norm={h.norm}" + (f" hidden={h.hidden}" if h.hidden else "")
                 + (" distillation" if h.distillation else ""))
    return "\n".join(lines)


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from ..complexity import cost

    space = _load(args)
    rng = np.random.default_rng(args.seed)
    for i in range(args.n):
        spec = space.sample(rng)
        c = cost(spec, space.resolution, num_classes=args.num_classes)
        params = space.encode(spec)
        if args.format == "yaml":
            print(f"# sample {i}: {spec.arch_id} {spec.pattern} {c.mparams:.3f} M params, "
                  f"{c.gmacs:.4f} GMACs at {space.resolution}")
            print(spec.to_yaml().rstrip())
            print("---")
        elif args.format == "json":
            print(json.dumps({"arch_id": spec.arch_id, "pattern": spec.pattern, "params": c.params,
                              "macs": c.macs, "resolution": space.resolution,
                              "space_params": params, "spec": spec.to_dict()}))
        else:
            print(f"[{i}] {spec.arch_id}  {spec.pattern}  {c.mparams:.3f} M params  "
                  f"{c.gmacs:.4f} GMACs at {space.resolution}x{space.resolution}, "
                  f"{args.num_classes} classes")
            print("    " + describe_spec(spec).replace("\n", "\n    "))
    return 0


def cmd_contains(args: argparse.Namespace) -> int:
    from .. import get_spec

    space = _load(args)
    spec = get_spec(args.arch)
    answer = space.contains(spec)
    name = spec.name or args.arch
    if answer:
        print(f"{name} is a point of {space.name} at resolution {space.resolution}")
        print(json.dumps(answer.params, indent=2))
        return 0
    print(f"{name} is not a point of {space.name} at resolution {space.resolution}: "
          f"{answer.reason}")
    if space.resolution != space.reference_resolution and name in space.named():
        print(f"(named architectures are points at the reference resolution "
              f"{space.reference_resolution}; `space.references({space.resolution})` maps them)")
    return 1


def _scale_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resolution", type=int, default=None,
                   help="input size the architectures are built for (default: the space's)")
    p.add_argument("--width-mult", type=float, default=None, help="width multiplier (default 1)")
    p.add_argument("--depth-mult", type=float, default=None, help="depth multiplier (default 1)")


def register(sub) -> None:
    p = sub.add_parser("spaces", help="list the search spaces (size, decisions, named "
                                      "architectures), or one space's decisions")
    p.add_argument("space", nargs="?", help="a space name or YAML file: list its decisions")
    p.add_argument("--resolution", type=int, default=None, help="resolution to load at")
    p.add_argument("--matrix", action="store_true", help="markdown table: which space contains "
                                                         "which named architecture (checked)")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("sample", help="draw architectures from a space; print them with params "
                                      "and MACs")
    p.add_argument("--space", required=True, help="space name (see `hybridnas spaces`) or YAML")
    p.add_argument("-n", type=int, default=5, help="how many (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs for the "
                                                                 "counts (default 1000)")
    p.add_argument("--format", choices=("text", "yaml", "json"), default="text")
    _scale_args(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("contains", help="is a named architecture or spec file a point of a space?"
                                        " (exit 0 yes, 1 no)")
    p.add_argument("--space", required=True, help="space name or YAML file")
    p.add_argument("arch", help="registered name or spec .yaml/.json")
    _scale_args(p)
    p.set_defaults(func=cmd_contains)
