"""A synthetic run directory, written exactly per docs/CONTRACTS.md.

Tests, the benchmark and the README screenshot need a run without running a
search (which takes minutes). The numbers follow the shape of a real proxy
search: accuracy grows with capacity and attention in late stages, latency
with MACs, some trials stop early, fail or are rejected, and the named
reference architectures are evaluated alongside.

    >>> from hybridnas.dashboard.testing import write_example_run
    >>> run_dir = write_example_run("/tmp/example_run", n_trials=30)   # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..spec import ArchSpec, StageSpec, StemSpec

__all__ = ["write_example_run", "example_trials"]

_STAGE_CHOICES = (
    ("mbconv", "convnext"),
    ("mbconv", "convnext", "transformer"),
    ("mbconv", "transformer", "interleaved"),
    ("transformer", "mbconv", "interleaved"),
)
_WIDTHS = ((32, 48, 64), (64, 96), (96, 128, 192), (192, 256, 384))
_REFERENCES = {  # name -> block per stage, at the proxy scale
    "coatnet_0": ("mbconv", "mbconv", "transformer", "transformer"),
    "convnext_tiny": ("convnext", "convnext", "convnext", "convnext"),
    "maxvit_like": ("mbconv", "mbconv", "interleaved", "interleaved"),
}
_MAX_EPOCHS = 12


def _spec(blocks, depths, widths) -> ArchSpec:
    stages = tuple(StageSpec(b, depth=int(d), width=int(w), stride=2 if i else 1)
                   for i, (b, d, w) in enumerate(zip(blocks, depths, widths)))
    return ArchSpec(stem=StemSpec(kind="conv", widths=(32,), strides=(2,)), stages=stages).validate()


def _cost(spec: ArchSpec, resolution: int = 32) -> tuple[int, int]:
    params = macs = 0
    factor = {"mbconv": 9.0, "convnext": 8.5, "transformer": 12.0, "interleaved": 12.5}
    for st, (h, w) in zip(spec.stages, spec.stage_resolutions(resolution)):
        p = int(st.depth * factor[st.block] * st.width ** 2)
        params += p
        attn = st.depth * (h * w) ** 2 * st.width if st.block in ("transformer", "interleaved") else 0
        macs += p * h * w + attn
    return params + 10 * spec.stages[-1].width, macs


def example_trials(n_trials: int = 40, seed: int = 0, metric_name: str = "val_accuracy",
                   accelerator: str = "cuda:NVIDIA H100", references: bool = True,
                   oneshot: bool = False, retrained: int = 5) -> pd.DataFrame:
    """The trials table of a synthetic run (contract columns plus ``val_loss``).

    ``oneshot=True`` makes it look like ``--strategy oneshot``: every subnet
    scored once with inherited weights (fidelity "inherited", no epochs, no
    curve; a few rejected) and given a predicted latency, latency measured
    only for those on the front of (metric, predicted latency), and the
    ``retrained`` best of the front trained standalone (``standalone_metric``,
    epochs and curve of the retraining).
    """
    if oneshot:
        return _oneshot_trials(example_trials(n_trials, seed, metric_name, accelerator,
                                              references), seed, retrained)
    rng = np.random.default_rng(seed)
    start = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    worker_free = [start, start]  # two trial workers
    rows = []
    names = list(_REFERENCES) if references else []
    for tid in range(n_trials):
        ref = names[tid] if tid < len(names) else None
        if ref:
            blocks = _REFERENCES[ref]
            depths, widths = (2, 2, 3, 2), tuple(w[1] for w in _WIDTHS)
        else:
            blocks = tuple(rng.choice(c) for c in _STAGE_CHOICES)
            depths = tuple(int(d) for d in rng.integers(1, 5, size=4))
            widths = tuple(int(rng.choice(w)) for w in _WIDTHS)
        spec = _spec(blocks, depths, widths)
        params, macs = _cost(spec)
        late_attn = sum(b in ("transformer", "interleaved") for b in blocks[2:])
        early_attn = blocks[1] == "transformer"
        final = (0.62 + 0.045 * math.log(params / 1e5) + 0.025 * late_attn - 0.04 * early_attn
                 + rng.normal(0, 0.012))
        final = float(np.clip(final, 0.3, 0.95))
        latency = float(0.35 + macs / 4e7 * (1 + 0.25 * late_attn) * rng.lognormal(0, 0.08))
        roll = rng.random() if ref is None else 0.0
        status = ("FAILED" if roll > 0.93 else "REJECTED" if roll > 0.88
                  else "EARLY_STOPPED" if roll > 0.68 else "COMPLETE")
        if tid == n_trials - 1 and n_trials > 5:
            status = "RUNNING"
        epochs = {"COMPLETE": _MAX_EPOCHS, "EARLY_STOPPED": int(rng.choice([3, 6])),
                  "FAILED": int(rng.integers(0, 3)), "REJECTED": 0, "RUNNING": 4}[status]
        tau = 2.5 + rng.random()
        curve = [round(final * (1 - 0.85 * math.exp(-e / tau)) + rng.normal(0, 0.006), 4)
                 for e in range(1, epochs + 1)]
        if status == "EARLY_STOPPED":  # the scheduler stops the weak ones
            curve = [round(v - 0.06, 4) for v in curve]
        metric = max(curve) if curve and status in ("COMPLETE", "EARLY_STOPPED") else math.nan
        secs = float((20 + macs / 2e6) * max(epochs, 0.3) * rng.lognormal(0, 0.1))
        w = int(np.argmin(worker_free))
        started = worker_free[w]
        finished = started + timedelta(seconds=secs)
        worker_free[w] = finished
        measured = status in ("COMPLETE", "EARLY_STOPPED")
        rows.append({
            "trial_id": tid, "status": status, "arch_id": spec.arch_id, "spec": spec.to_json(),
            "pattern": spec.pattern,
            "space_params": json.dumps({f"stages.{i}.{k}": v for i, (b, d, wd) in
                                        enumerate(zip(blocks, depths, widths))
                                        for k, v in (("block", b), ("depth", d), ("width", wd))}),
            "params": params, "macs": macs,
            "latency_ms": latency if measured else math.nan,
            "latency_p10_ms": latency * 0.95 if measured else math.nan,
            "latency_p90_ms": latency * 1.08 if measured else math.nan,
            "latency_device": "cpu:1thread" if measured else None,
            "predicted_latency_ms": latency * float(rng.lognormal(0, 0.12)) if status != "FAILED"
            else math.nan,
            "metric": metric, "metric_name": metric_name, "curve": json.dumps(curve),
            "epochs": epochs, "max_epochs": _MAX_EPOCHS, "full_fidelity": status == "COMPLETE",
            "device_seconds": secs if status != "REJECTED" else 0.0, "accelerator": accelerator,
            "error": "NonFiniteLoss: loss is nan at epoch 2" if status == "FAILED" else None,
            "reference": ref,
            "checkpoint": f"checkpoints/trial_{tid}" if status == "COMPLETE" else None,
            "started_at": started.isoformat(),
            "finished_at": None if status == "RUNNING" else finished.isoformat(),
            "val_loss": 1.5 * (1 - metric) if math.isfinite(metric) else math.nan,
        })
    return pd.DataFrame(rows)


def _oneshot_trials(trials: pd.DataFrame, seed: int, retrained: int) -> pd.DataFrame:
    """Turn a multi-trial synthetic table into a one-shot one (see ``example_trials``)."""
    from ._data import front_mask, normalise_trials

    rng = np.random.default_rng(seed + 1)
    t = trials.copy()
    n = len(t)
    rejected = (t["status"] == "REJECTED").to_numpy()
    final = np.array([json.loads(c)[-1] if json.loads(c) else math.nan for c in t["curve"]])
    # Inherited weights rank subnets roughly, a few points below trained ones.
    inherited = np.clip(np.nan_to_num(final, nan=0.6) - 0.05 + rng.normal(0, 0.02, n), 0.1, 0.95)
    latency = t["predicted_latency_ms"].to_numpy(dtype=float)
    latency = np.where(np.isfinite(latency), latency, 0.4 + rng.random(n))
    t["status"] = np.where(rejected, "REJECTED", "COMPLETE")
    t["metric"] = np.where(rejected, math.nan, inherited)
    t["latency_ms"] = np.where(rejected, math.nan, latency)
    t["latency_p10_ms"], t["latency_p90_ms"] = t["latency_ms"] * 0.95, t["latency_ms"] * 1.08
    t["latency_device"] = np.where(rejected, None, "cpu:1thread")
    t["predicted_latency_ms"] = latency * rng.lognormal(0, 0.1, n)
    t["curve"], t["epochs"], t["max_epochs"] = "[]", 0, 0
    t["full_fidelity"], t["fidelity"], t["standalone_metric"] = True, "inherited", math.nan
    t["device_seconds"] = np.where(rejected, 0.0, 0.05 + 0.02 * rng.random(n))
    t["error"] = np.where(rejected, "stages[1]: attention before convolution", None)
    t["checkpoint"] = None
    t["val_loss"] = 1.5 * (1 - t["metric"])
    # Latency is measured only for subnets on the front of (metric, predicted
    # latency) when the search checked it (here: after a quarter, half, all).
    norm = normalise_trials(t)
    measured = np.zeros(n, dtype=bool)
    for part in (n // 4, n // 2, n):
        measured[:part] |= front_mask(norm.iloc[:part], "predicted_latency_ms")
    for col in ("latency_ms", "latency_p10_ms", "latency_p90_ms"):
        t[col] = t[col].where(measured)
    t["latency_device"] = t["latency_device"].where(measured, None)
    on_front = front_mask(normalise_trials(t))
    best = t[on_front].sort_values("metric", ascending=False).index[:retrained]
    for i in best:
        target = float(final[i]) if math.isfinite(final[i]) else float(t.at[i, "metric"]) + 0.05
        curve = [round(target * (1 - 0.8 * math.exp(-e / 2.5)), 4) for e in range(1, _MAX_EPOCHS + 1)]
        t.at[i, "standalone_metric"] = max(curve)
        t.at[i, "curve"], t.at[i, "epochs"], t.at[i, "max_epochs"] = json.dumps(curve), 12, 12
        t.at[i, "checkpoint"] = f"checkpoints/trial_{int(t.at[i, 'trial_id'])}"
    return t


def _write_study(path: Path, name: str, trials: pd.DataFrame, metric_name: str) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {}
    blocks = ("mbconv", "convnext", "transformer", "interleaved")  # references use any
    for i, widths in enumerate(_WIDTHS):
        dists[f"stages.{i}.block"] = CategoricalDistribution(blocks)
        dists[f"stages.{i}.depth"] = IntDistribution(1, 4)
        dists[f"stages.{i}.width"] = CategoricalDistribution(widths)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{path}",
                                directions=["maximize", "minimize"])
    with warnings.catch_warnings():  # experimental in Optuna, stable enough for names
        warnings.simplefilter("ignore")
        study.set_metric_names([metric_name, "latency_ms"])
    state = {"COMPLETE": optuna.trial.TrialState.COMPLETE,
             # early-stopped trials reach Optuna as COMPLETE with low-fidelity values
             "EARLY_STOPPED": optuna.trial.TrialState.COMPLETE,
             "FAILED": optuna.trial.TrialState.FAIL, "REJECTED": optuna.trial.TrialState.PRUNED}
    frozen = []
    for r in trials.itertuples(index=False):
        if r.status not in state:
            continue
        params = json.loads(r.space_params)
        # a one-shot search tells its study the predicted latency where none was measured
        latency = r.latency_ms if math.isfinite(r.latency_ms) else r.predicted_latency_ms
        values = [r.metric, latency] if state[r.status] == optuna.trial.TrialState.COMPLETE \
            else None
        frozen.append(optuna.trial.create_trial(
            params=params, distributions={k: dists[k] for k in params}, values=values,
            state=state[r.status]))
    study.add_trials(frozen)


def write_example_run(run_dir: str | os.PathLike, n_trials: int = 40, seed: int = 0,
                      study: bool = True, metric_name: str = "val_accuracy",
                      references: bool = True, oneshot: bool = False,
                      retrained: int = 5) -> Path:
    """Write a synthetic run directory (config.yaml, trials.parquet/.csv,
    pareto.csv, summary.json and, with ``study=True``, an Optuna study.db
    whose study name is the directory name). ``oneshot``/``retrained``: a
    one-shot run's table (``example_trials``). Returns the directory."""
    import yaml

    from ..pareto import hypervolume
    from ._data import MAXIMIZE, front_mask, normalise_trials

    run_dir = Path(run_dir)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    name = run_dir.resolve().name
    trials = example_trials(n_trials, seed, metric_name=metric_name, references=references,
                            oneshot=oneshot, retrained=retrained)
    table = trials
    table.to_parquet(run_dir / "trials.parquet", index=False)
    table.to_csv(run_dir / "trials.csv", index=False)
    mask = front_mask(normalise_trials(table))
    front = table[mask].sort_values("latency_ms")
    front.to_csv(run_dir / "pareto.csv", index=False)
    pts = front[["metric", "latency_ms"]].to_numpy(dtype=float)
    eligible = table[(table.status == "COMPLETE") & table.full_fidelity]
    ref = [float(eligible.metric.min()) - 0.02, float(eligible.latency_ms.max()) * 1.1] \
        if len(eligible) else [0.0, 1.0]
    spent = float(table.device_seconds.sum()) / 3600
    summary = {  # the keys hybridnas.search writes
        "budget": {"unit": "gpu", "spent_hours": round(spent, 4),
                   "total_hours": round(spent * 1.5, 4)},
        "trials": {k: int(v) for k, v in table.status.value_counts().items()},
        "objectives": ["metric", "latency_ms"], "maximize": [True, False],
        "metric_name": metric_name, "front_size": int(mask.sum()),
        "hypervolume": hypervolume(pts, MAXIMIZE, ref) if len(pts) else 0.0,
        "reference_point": ref, "front_trial_ids": [int(t) for t in front.trial_id],
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    config = {"run_name": name, "study_name": name, "space": "stagewise", "dataset": "digits", "resolution": 32,
              "objectives": ["latency"], "metric_name": metric_name,
              "budget_gpu_hours": round(spent * 1.5, 4), "seed": seed,
              "strategy": "oneshot" if oneshot else "trials"}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run_dir / "logs" / "search.log").write_text("synthetic run written by "
                                                 "hybridnas.dashboard.testing\n")
    if study:
        db = run_dir / "study.db"
        if db.exists():
            db.unlink()
        _write_study(db, name, trials, metric_name)
    return run_dir


# --------------------------------------------------------------------------
# Headless-browser check of a written page
# --------------------------------------------------------------------------

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--hide-scrollbars", "--mute-audio")

# Installed first in <head>: collects every error the page raises.
_COLLECT_ERRORS = """<script>window.__errors=[];
window.addEventListener('error',function(e){window.__errors.push('error: '+(e.message||e));});
window.addEventListener('unhandledrejection',function(e){window.__errors.push('rejection: '+e.reason);});
(function(){var ce=console.error;console.error=function(){
window.__errors.push('console.error: '+Array.prototype.join.call(arguments,' '));ce.apply(console,arguments);};})();
</script>"""

# Runs after load: counts what plotly drew, exercises the table sort, and
# writes the findings into the DOM that --dump-dom prints.
_REPORT = """<script>window.addEventListener('load',function(){setTimeout(function(){
var r={errors:window.__errors};
r.plots=document.querySelectorAll('.js-plotly-plot').length;
r.main_svgs=document.querySelectorAll('.main-svg').length;
r.points=document.querySelectorAll('.scatterlayer .point').length;
r.bars=document.querySelectorAll('.barlayer .point').length;
r.traces=0;document.querySelectorAll('.js-plotly-plot').forEach(function(g){r.traces+=(g.data||[]).length;});
var t=document.getElementById('trials');
if(t){var hs=t.tHead.rows[0].cells,col=-1;for(var i=0;i<hs.length;i++){if(hs[i].textContent==='metric')col=i;}
r.rows=t.tBodies[0].rows.length;
if(col>=0){hs[col].click();hs[col].click();
var v=[];for(var j=0;j<t.tBodies[0].rows.length;j++){var x=t.tBodies[0].rows[j].cells[col].getAttribute('data-v');if(x!=='')v.push(parseFloat(x));}
r.metric_sorted_desc=v.every(function(a,k){return k===0||v[k-1]>=a;});r.metric_values=v.length;}}
var pre=document.createElement('pre');pre.id='__report';pre.textContent=JSON.stringify(r);
document.body.appendChild(pre);},500);});</script>"""


def check_in_browser(html_path: str | os.PathLike, *, browser: str | None = None,
                     screenshot: str | os.PathLike | None = None, window: tuple[int, int] =
                     (1400, 2600), timeout: float = 120.0) -> dict:
    """Open a dashboard page in headless Chromium and report what rendered.

    Returns a dict: ``plots`` (count of ``.js-plotly-plot``), ``main_svgs``,
    ``points`` (scatter markers drawn), ``bars``, ``traces``, ``rows`` (trials
    table), ``metric_sorted_desc`` (clicking the metric header twice sorted
    the table), ``errors`` (JavaScript errors, empty when all is well).
    With ``screenshot`` also saves a PNG of the page at ``window`` size.
    """
    import re
    import subprocess
    import tempfile

    from ._png import find_browser

    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError("no chromium/chrome binary")
    html_path = Path(html_path).resolve()
    text = html_path.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="hnas_chrome_") as tmp:
        probe = Path(tmp) / "probe.html"
        text = text.replace("<head>", "<head>" + _COLLECT_ERRORS, 1)
        probe.write_text(text.replace("</body>", _REPORT + "</body>", 1), encoding="utf-8")
        base = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile",
                f"--window-size={window[0]},{window[1]}", "--virtual-time-budget=15000"]
        out = subprocess.run([*base, "--dump-dom", probe.as_uri()], capture_output=True,
                             text=True, timeout=timeout, check=False)
        m = re.search(r'<pre id="__report">(.*?)</pre>', out.stdout, re.DOTALL)
        if not m:
            raise RuntimeError(f"page did not report (chromium exit {out.returncode}): "
                               f"{out.stderr.strip()[-500:]}")
        import html as _html

        report = json.loads(_html.unescape(m.group(1)))
        if screenshot is not None:
            shot = Path(screenshot).resolve()
            shot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([*base, f"--screenshot={shot}", html_path.as_uri()],
                           capture_output=True, text=True, timeout=timeout, cwd=tmp,
                           check=False)
            report["screenshot"] = str(shot) if shot.exists() else None
    return report
