"""The dashboard page: one self-contained HTML file (plotly.js embedded,
no network needed), and ``write_dashboard`` for a running search."""
from __future__ import annotations

import html
import logging
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .._io import write_atomic
from . import _data, _draw

__all__ = ["build_html", "render_dashboard", "write_dashboard", "default_output"]

log = logging.getLogger(__name__)

#: Parameter importance is drawn from at least this many full-fidelity trials:
#: fANOVA on a handful of points ranks noise.
IMPORTANCE_MIN_TRIALS = 20
#: Table columns left out when no trial has a value (no latency predictor calibrated).
_OPTIONAL_COLUMNS = ("predicted_latency_ms", "standalone_metric")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
header{background:#1d2b3a;color:#fff;padding:14px 24px}
header h1{font-size:20px;margin:0 0 4px 0} header .sub{font-size:13px;opacity:.8}
main{padding:12px 24px 40px 24px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 12px 0}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:8px 14px;font-size:13px}
.card b{font-size:15px}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:12px}
@media (max-width:1100px){.grid{grid-template-columns:minmax(0,1fr)}}
.panel{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:4px;margin-bottom:12px;min-width:0}
.note{font-size:12px;color:#5c6670;padding:2px 10px 8px 10px}
h2{font-size:16px;margin:18px 0 8px 0}
table.trials{border-collapse:collapse;font-size:12px;background:#fff;width:100%}
table.trials th,table.trials td{border-bottom:1px solid #e3e6ea;padding:3px 8px;text-align:right;white-space:nowrap}
table.trials th{position:sticky;top:0;background:#eef1f4;cursor:pointer;user-select:none}
table.trials th.asc::after{content:" \\25B2"} table.trials th.desc::after{content:" \\25BC"}
table.trials td.t{text-align:left} tr.front td{background:#fff7d6}
table.trials td.err{text-align:left;white-space:normal;min-width:24em;overflow-wrap:anywhere}
tr.s-FAILED td,tr.s-REJECTED td{color:#9a3b3b} tr.s-EARLY_STOPPED td{color:#666}
.tablewrap{max-height:560px;overflow:auto;border:1px solid #dde1e6;border-radius:6px}
input.filter{margin:0 0 8px 0;padding:4px 8px;font-size:13px;width:280px}
"""

# Plain-JS column sort (numbers by value, text alphabetically) and a row filter:
# the page must work offline, so no CDN table library.
_TABLE_JS = """
// Plots drawn while the page was still parsing measured a half-built grid.
window.addEventListener('load',function(){window.dispatchEvent(new Event('resize'));});
(function(){
  var table=document.getElementById('trials'); if(!table) return;
  var body=table.tBodies[0];
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,col){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      Array.prototype.forEach.call(table.tHead.rows[0].cells,function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[col].getAttribute('data-v'),y=b.cells[col].getAttribute('data-v');
        var nx=parseFloat(x),ny=parseFloat(y),bothNum=!isNaN(nx)&&!isNaN(ny);
        if(x===''&&y!=='') return 1; if(y===''&&x!=='') return -1;
        var c=bothNum?nx-ny:x.localeCompare(y);
        return asc?c:-c;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  var box=document.getElementById('trial-filter');
  if(box) box.addEventListener('input',function(){
    var q=box.value.toLowerCase();
    Array.prototype.forEach.call(body.rows,function(r){
      r.style.display=r.textContent.toLowerCase().indexOf(q)>=0?'':'none';});
  });
})();
"""


def default_output(run_dirs: Sequence[str | os.PathLike]) -> Path:
    """``<run>/dashboard.html`` for one run, ``./dashboard.html`` for several."""
    if len(run_dirs) == 1:
        return Path(run_dirs[0]) / "dashboard.html"
    return Path("dashboard.html")


def _fig_html(fig, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def _cell(value: Any, col: str) -> tuple[str, str]:
    """(sort key, shown text) of one table cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", ""
    if isinstance(value, (bool, np.bool_)):
        return ("1", "yes") if value else ("0", "")
    if col in ("params", "macs") and isinstance(value, (int, float, np.integer, np.floating)):
        # 0 is the trials table's "not counted" (a rejected or failed trial): blank
        return ("", "") if value == 0 else (repr(float(value)), _draw._fmt_count(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value)), str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if col in ("epochs", "max_epochs"):
            return repr(v), f"{v:.0f}"
        if col == "device_seconds":
            return repr(v), f"{v:.0f}"
        return repr(v), f"{v:.4g}"
    text = str(value)
    return text, text


def table_html(table: pd.DataFrame) -> str:
    """The trials table as HTML: sortable cells, blank where a value is
    missing, optional columns only when some trial has a value."""
    table = table.drop(columns=[c for c in _OPTIONAL_COLUMNS
                                if c in table.columns and table[c].isna().all()])
    if "fidelity" in table.columns and table["fidelity"].isin(["proxy", None]).all():
        table = table.drop(columns=["fidelity"])  # a multi-trial run: every metric a proxy
    cols = list(table.columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = []
    for rec in table.itertuples(index=False):
        cells = []
        for col, value in zip(cols, rec):
            key, text = _cell(value, col)
            cls = ' class="err"' if col == "error" else ' class="t"' if col in (
                "run", "status", "pattern", "reference", "arch_id") else ""
            cells.append(f'<td{cls} data-v="{html.escape(key, quote=True)}">'
                         f"{html.escape(text)}</td>")
        rcls = f"s-{rec.status}" + (" front" if rec.on_front else "")
        rows.append(f'<tr class="{rcls}">' + "".join(cells) + "</tr>")
    return (f'<table class="trials" id="trials"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _cards(runs: Sequence[_data.Run], hv: dict[str, Any], x: str) -> str:
    out = []
    last = hv["curve"].groupby("run").tail(1).set_index("run") if len(hv["curve"]) else None
    for run in runs:
        t = run.trials
        counts = t["status"].value_counts()
        by_status = ", ".join(f"{counts[s]} {s.lower()}" for s in
                              ("COMPLETE", "EARLY_STOPPED", "FAILED", "REJECTED", "RUNNING")
                              if s in counts)
        budget = _data._summary_budget(run.summary)
        spent = budget.get("spent_hours")
        if spent is None:
            spent = float(t["device_seconds"].fillna(0).sum()) / 3600
        total = budget.get("total_hours")
        money = f"{spent:.3g}" + (f" / {float(total):.3g}" if total else "")
        front = int(_data.front_mask(t, objectives=_data.run_objectives(runs, x),
                                     limits=run.limits).sum())
        hv_now = f"{last.loc[run.name, 'hypervolume']:.4g}" if last is not None and \
            run.name in last.index else "-"
        out.append(
            f'<div class="card"><b>{html.escape(run.name)}</b><br>{len(t)} trials '
            f"({html.escape(by_status or 'none yet')})<br>front {front} | hypervolume {hv_now} | "
            f"{html.escape(run.budget_unit)}-hours {money}</div>")
    return '<div class="cards">' + "".join(out) + "</div>"


def build_html(runs: Sequence[_data.Run], *, log_x: bool = False, importance: Any = True,
               x: str | None = None, title: str | None = None,
               refresh_seconds: float | None = None,
               max_shown: int | None = _data.MAX_SHOWN) -> str:
    """The whole page as a string (see ``render_dashboard``)."""
    import plotly.offline

    x = x or _data.choose_x(runs)
    front = _data.get_front_info(runs, x=x, max_shown=max_shown)
    hv = _data.get_hypervolume_info(runs, x=x)
    usage = _data.get_block_usage_info(runs, x=x)
    curves = _data.get_learning_curves_info(runs, max_shown=max_shown, x=x)
    latency = _data.get_latency_prediction_info(runs, max_shown=max_shown, x=x)
    table = _data.get_trials_table(runs, x=x, max_shown=max_shown)
    n_trials = sum(len(r.trials) for r in runs)
    metric_name = front["metric_name"]
    oneshot = bool(len(front["points"])) and (front["points"]["fidelity_kind"] == "inherited").any()
    note = _draw.thinned_note(len(table), n_trials, "subnets" if oneshot else "trials")
    thinned = (f'<div class="note thinned">{html.escape(note)}; every row is in '
               "trials.parquet.</div>" if len(table) < n_trials else "")

    sections = [
        ('<div class="panel">' + _fig_html(_draw.plot_front(front, log_x=log_x), "front")
         + '<div class="note">Lighter: every trial with a metric (open markers: low fidelity). '
           'Bold and joined: the front of full-fidelity COMPLETE trials. Stars: named '
           'reference architectures.'
         + (' One-shot run: circles score a subnet with weights inherited from the supernet; '
            'diamonds, joined to their circle by a dotted line, the same subnet retrained '
            'standalone. Subnets whose latency was not measured stand at their predicted '
            'latency.' if oneshot else "") + '</div>' + thinned + '</div>'),
        '<div class="grid">',
        '<div class="panel">' + _fig_html(_draw.plot_hypervolume(hv), "hypervolume") + "</div>",
        '<div class="panel">' + _fig_html(_draw.plot_block_usage(usage), "blocks") + "</div>",
        '<div class="panel">' + _fig_html(_draw.plot_learning_curves(curves, metric_name),
                                          "curves") + "</div>",
    ]
    if len(latency["points"]):
        sections.append('<div class="panel">' + _fig_html(
            _draw.plot_latency_prediction(latency), "latency") + "</div>")
    fidelity = _data.get_fidelity_info(runs)
    if len(fidelity["points"]):
        sections.append('<div class="panel">' + _fig_html(
            _draw.plot_fidelity(fidelity), "fidelity") + "</div>")
    if importance:
        for i, run in enumerate(runs):
            try:
                info = _data.get_importance_info(
                    run, evaluator=None if importance is True else importance,
                    min_trials=IMPORTANCE_MIN_TRIALS,
                    max_trials=None if max_shown is None else _data.IMPORTANCE_MAX_TRIALS)
            except Exception as e:  # a locked or foreign study must not cost the page
                log.warning("parameter importance for %s failed: %s", run.name, e)
                info = {"importances": pd.DataFrame(columns=["objective", "param", "importance"]),
                        "n_trials": 0, "note": f"importance failed: {type(e).__name__}: {e}"}
            sections.append('<div class="panel">' + _fig_html(
                _draw.plot_importance(info, run.name if len(runs) > 1 else ""),
                f"importance-{i}") + "</div>")
    sections.append("</div>")
    title = title or "hybridnas search: " + ", ".join(r.name for r in runs)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    refresh = (f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">'
               if refresh_seconds else "")
    return "".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>{refresh}",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<style>{_CSS}</style>",
        f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script>",
        "</head><body>",
        (f"<header><h1>{html.escape(title)}</h1><div class='sub'>{html.escape(metric_name)} vs "
         f"{html.escape(front['x_label'])} | generated {now}</div></header><main>"),
        _cards(runs, hv, x),
        *sections,
        f"<h2>Trials ({n_trials})</h2>", thinned,
        "<input class='filter' id='trial-filter' placeholder='filter rows (e.g. C-C-T-T, FAILED)'>",
        f"<div class='tablewrap'>{table_html(table)}</div>",
        f"</main><script>{_TABLE_JS}</script></body></html>",
    ])


def render_dashboard(run_dirs: str | os.PathLike | Sequence[str | os.PathLike],
                     out: str | os.PathLike | None = None, *, log_x: bool = False,
                     importance: Any = True, x: str | None = None, title: str | None = None,
                     refresh_seconds: float | None = None, allow_empty: bool = False,
                     max_shown: int | None = _data.MAX_SHOWN) -> Path:
    """Write the dashboard of one or several runs to ``out`` and return its path.

    ``run_dirs``: run directories (docs/CONTRACTS.md); several runs overlay
    their fronts. ``out`` defaults to ``<run>/dashboard.html`` (one run) or
    ``./dashboard.html``. ``log_x`` starts the front with a log cost axis;
    ``importance=False`` skips Optuna's importance (the slowest part), an
    Optuna importance evaluator replaces the default fANOVA;
    ``x`` picks the cost axis (latency_ms, macs, params; default latency
    when measured). ``max_shown``: a page of runs with more trials draws
    that many (front, retrained, references and the best always among them;
    the page says so) and fits importance on a sample; None draws all.
    Raises ``UserError`` for a missing or unreadable run.
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    runs = _data.load_runs(list(run_dirs), allow_empty=allow_empty)
    if x is not None and x not in _data.X_LABELS:
        from ..errors import UserError

        raise UserError(f"x={x!r} is not a cost column; choose one of {sorted(_data.X_LABELS)}")
    out = Path(out) if out is not None else default_output(list(run_dirs))
    text = build_html(runs, log_x=log_x, importance=importance, x=x, title=title,
                      refresh_seconds=refresh_seconds, max_shown=max_shown)
    # A browser (or the live server) may read the file while we write it.
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return out


def write_dashboard(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                    **kwargs: Any) -> Path | None:
    """Rewrite ``<run_dir>/dashboard.html`` while a search runs.

    Safe to call every few trials: it never raises (a failure is logged and
    ``None`` returned, so a half-written trials table cannot stop a search),
    writes atomically, and accepts a run with no trials yet. Importance uses
    a 16-tree fANOVA (about 4x faster than Optuna's 64-tree default). Keyword
    arguments go to ``render_dashboard``.
    """
    start = time.perf_counter()
    try:
        kwargs.setdefault("allow_empty", True)
        if kwargs.get("importance", True) is True:
            import optuna

            kwargs["importance"] = optuna.importance.FanovaImportanceEvaluator(n_trees=16, seed=0)
        path = render_dashboard(run_dir, out, **kwargs)
    except Exception as e:  # never break the caller (the search loop)
        log.warning("dashboard for %s not written: %s: %s", run_dir, type(e).__name__, e)
        return None
    log.debug("dashboard %s written in %.2fs", path, time.perf_counter() - start)
    return path
