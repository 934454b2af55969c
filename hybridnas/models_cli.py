"""``hybridnas models`` and ``hybridnas show``."""
from __future__ import annotations

import argparse


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    widths[-1] = 0  # last column is free text: no padding
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)


def cmd_models(args: argparse.Namespace) -> int:
    from .complexity import cost
    from .zoo import get_named, list_models

    rows = []
    for name in list_models():
        named = get_named(name)
        c = cost(named.spec, named.resolution, num_classes=named.num_classes)
        published = ""
        if named.params_m:
            published = f"{named.params_m}M / " + (f"{named.gmacs}G" if named.gmacs else "-")
        rows.append([name, f"{c.mparams:.2f}", f"{c.gmacs:.3f}", named.spec.pattern, published,
                     named.note])
    print(_table(rows, ["name", "params(M)", "GMACs", "pattern", "published", "note"]))
    print(f"\n{len(rows)} architectures; counts at {224}x224, 1000 classes (fvcore + attention handles)")
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
                        "parameters"]))
    print(f"total: {c.mparams:.3f} M params, {c.gmacs:.3f} GMACs at {args.resolution}, "
          f"{args.num_classes} classes")
    return 0


def register(sub) -> None:
    p = sub.add_parser("models", help="list the named architectures with params, GMACs and pattern")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("show", help="per-stage table of a named architecture or spec file")
    p.add_argument("arch", help="registered name (see `hybridnas models`) or a spec .yaml/.json")
    p.add_argument("--resolution", type=int, default=224, help="input size (default 224)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    p.set_defaults(func=cmd_show)
