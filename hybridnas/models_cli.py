"""``hybridnas models`` and ``hybridnas show``."""
from __future__ import annotations

import argparse

from ._text import table as _table


def _count_size(name: str) -> tuple[int, int]:
    from .complexity import count_size  # imports torch: only for an entry without stored sizes

    return count_size(name)


def cmd_models(args: argparse.Namespace) -> int:
    from .zoo import get_named, list_models

    names = list_models(args.filter or "")
    if not names:
        print(f"no architecture matches {args.filter!r} (`hybridnas models` lists them all)")
        return 1
    rows = []
    for name in names:
        named = get_named(name)
        # stored with the registry entry; an entry without one is counted now (slow: builds it)
        params, macs = named.counted or _count_size(name)
        published = ""
        if named.params_m:
            published = f"{named.params_m}M / " + (f"{named.gmacs}G" if named.gmacs else "-")
        at = "" if (named.resolution, named.num_classes) == (224, 1000) else \
            f" (at {named.resolution}, {named.num_classes} outputs)"
        rows.append([name, f"{params / 1e6:.2f}", f"{macs / 1e9:.3f}", named.spec.pattern, published,
                     named.note + at])
    print(_table(rows, ["name", "params(M)", "GMACs", "pattern", "published", "note"]))
    print(f"\n{len(rows)} architectures; counts at 224x224, 1000 classes unless noted "
          f"(fvcore + attention handles)")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from . import get_spec
    from .complexity import cost

    spec = get_spec(args.arch)
    spec.validate(args.resolution)
    c = cost(spec, args.resolution, num_classes=args.num_classes, per_stage=True)
    sizes = spec.stage_resolutions(args.resolution)
    print(f"{spec.name or args.arch}  id={spec.arch_id}  pattern={spec.pattern}  dims={spec.dims}")
    st = spec.stem
    stem_row = ["stem", st.kind, "", "x".join(map(str, st.widths)) + (f"->{st.proj}" if st.proj else ""),
                f"/{st.reduction}", f"{c.by_module['stem']['params'] / 1e6:.3f}",
                f"{c.by_module['stem']['macs'] / 1e6:.1f}", ""]
    rows = [stem_row]
    for i, (s, hw) in enumerate(zip(spec.stages, sizes)):
        m = c.by_module[f"stages.{i}"]
        extra = ", ".join(f"{k}={v}" for k, v in s.params().items() if v not in (None, False))
        rows.append([f"stages[{i}]", s.block, s.depth, s.width,
                     "x".join(map(str, hw[: spec.dims])) if spec.dims == 2 else str(hw[0]),
                     f"{m['params'] / 1e6:.3f}", f"{m['macs'] / 1e6:.1f}", extra])
    print(_table(rows, ["part", "block", "depth", "width", "resolution", "params(M)", "MMACs",
                        "block settings"]))
    print(f"total: {c.mparams:.3f} M params, {c.gmacs:.3f} GMACs at {args.resolution}, "
          f"{args.num_classes} classes")
    return 0


def register(sub) -> None:
    p = sub.add_parser("models", help="list the named architectures with params, GMACs and pattern")
    p.add_argument("filter", nargs="?", default="",
                   help="shell wildcard on the names, e.g. 'coat*' (quote it)")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("show", help="per-stage table of a named architecture or spec file")
    p.add_argument("arch", help="registered name (see `hybridnas models`) or a spec .yaml/.json")
    p.add_argument("--resolution", type=int, default=224, help="input size (default 224)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    p.set_defaults(func=cmd_show)
