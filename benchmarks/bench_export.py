"""Export benchmark: per architecture, how long each format takes to write, how
big it is, how close TorchScript and ONNX Runtime stay to PyTorch, and how
fast each runs (batch 1, one CPU thread), side by side.

    .venv/bin/python benchmarks/bench_export.py                  # tiny specs + 3 named at 32x32
    .venv/bin/python benchmarks/bench_export.py coatnet_0 maxvit_tiny --resolution 64

Targets: ONNX max|diff| <= 1e-4 (float32); TorchScript max|diff| <= 1e-5.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def bench_one(name: str, resolution: int, repeats: int) -> dict:
    import numpy as np
    import onnxruntime as ort
    import torch

    import hybridnas
    from hybridnas.export import exporter
    from hybridnas.export.testing import TINY_SPECS
    from hybridnas.latency._measure import time_callable

    spec = TINY_SPECS[name] if name in TINY_SPECS else hybridnas.get_spec(name)
    model = hybridnas.build_model(spec, num_classes=10).eval()
    x = torch.randn(1, 3, resolution, resolution)
    row = {"name": name, "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    with tempfile.TemporaryDirectory(prefix="hnas_bench_export_") as tmp:
        folder = Path(tmp)
        for fmt, fn in (("torchscript", exporter.export_torchscript),
                        ("onnx", exporter.export_onnx)):
            path = folder / exporter.FORMAT_FILES[fmt]
            t0 = time.perf_counter()
            try:
                value = fn(model, x, path)
            except Exception as e:  # noqa: BLE001 - a benchmark reports, it does not stop
                row[f"{fmt}_error"] = exporter._one_line(e)[:120]
                continue
            row[f"{fmt}_s"] = time.perf_counter() - t0
            row[f"{fmt}_diff"] = value[0] if fmt == "onnx" else value
            row[f"{fmt}_mb"] = path.stat().st_size / 2**20
        torch.set_num_threads(1)
        with torch.no_grad():
            row["eager_ms"] = float(np.median(time_callable(lambda: model(x), "cpu", 3, repeats)))
            if "torchscript_s" in row:
                ts = torch.jit.load(str(folder / "model.ts"))
                row["ts_ms"] = float(np.median(time_callable(lambda: ts(x), "cpu", 3, repeats)))
        if "onnx_s" in row:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(folder / "model.onnx"), opts,
                                        providers=["CPUExecutionProvider"])
            feed = {"input": x.numpy()}
            row["ort_ms"] = float(np.median(time_callable(lambda: sess.run(None, feed), "cpu", 3,
                                                          repeats)))
    return row


def main() -> None:
    from hybridnas.export.testing import TINY_SPECS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="named architectures or tiny spec keys")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    names = args.names or [*TINY_SPECS, "convnext_tiny", "coatnet_0", "vit_c_1gf"]
    header = (f"{'architecture':16} {'params(M)':>9} {'ts(s)':>6} {'onnx(s)':>7} {'onnx(MB)':>8} "
              f"{'ts|diff|':>9} {'onnx|diff|':>10} {'eager(ms)':>9} {'ts(ms)':>7} {'ort(ms)':>7}"
              f" {'ort/eager':>9}")
    print(f"resolution {args.resolution} (tiny specs: 16), batch 1, 1 thread for timings, "
          f"{args.repeats} repeats")
    print(header)
    f = lambda r, k, spec: format(r[k], spec) if k in r else "-"  # noqa: E731
    for name in names:
        r = bench_one(name, args.resolution if name not in TINY_SPECS else 16, args.repeats)
        ratio = r["ort_ms"] / r["eager_ms"] if "ort_ms" in r else None
        print(f"{name:16} {r['params_m']:9.3f} {f(r, 'torchscript_s', '6.1f')} "
              f"{f(r, 'onnx_s', '7.1f')} {f(r, 'onnx_mb', '8.2f')} "
              f"{f(r, 'torchscript_diff', '9.1e')} {f(r, 'onnx_diff', '10.1e')} "
              f"{f(r, 'eager_ms', '9.2f')} {f(r, 'ts_ms', '7.2f')} {f(r, 'ort_ms', '7.2f')} "
              f"{format(ratio, '9.2f') if ratio else '-':>9}", flush=True)
        for fmt in ("torchscript", "onnx"):
            if f"{fmt}_error" in r:
                print(f"  {fmt} failed: {r[f'{fmt}_error']}")


if __name__ == "__main__":
    main()
