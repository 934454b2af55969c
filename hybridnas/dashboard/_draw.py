"""Drawing: turn the ``get_*_info`` data into plotly figures.

Nothing here computes a number a user reads; it only chooses marks, colours
and hover text, so the tests check the data functions and only smoke-test
these.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "plot_front",
    "plot_hypervolume",
    "plot_block_usage",
    "plot_importance",
    "plot_learning_curves",
    "plot_latency_prediction",
    "plot_fidelity",
]

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39",
            "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363")
_RUN_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "pentagon")
_RUN_DASH = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
_FONT = dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=12)


def colour_map(keys: Sequence[str]) -> dict[str, str]:
    """A stable colour per key (pattern or block type), the same in every figure."""
    return {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(sorted(set(keys)))}


def _layout(fig, title: str, height: int = 420, subtitle: str = "", **kw) -> None:
    # Details go in the subtitle: a long title runs under plotly's mode bar.
    fig.update_layout(title=dict(text=title, x=0.01, subtitle=dict(text=subtitle)),
                      template="plotly_white", font=_FONT, height=height,
                      margin=dict(l=60, r=20, t=80 if subtitle else 60, b=50), **kw)


def _fmt_count(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "?"
    v = float(v)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.2f}{unit}"
    return f"{v:.0f}"


def _hover(points: pd.DataFrame) -> list[list]:
    return [[r.run, int(r.trial_id), r.status, r.pattern, r.summary, _fmt_count(r.params),
             _fmt_count(r.macs), r.fidelity, r.reference or ""] for r in points.itertuples()]


def _hover_template(metric_name: str, x_label: str) -> str:
    return ("<b>%{customdata[8]} trial %{customdata[1]}</b> (%{customdata[0]}, %{customdata[2]})"
            "<br>%{customdata[3]}: %{customdata[4]}"
            f"<br>{metric_name} %{{y:.4f}} | {x_label} %{{x:.4g}}"
            "<br>params %{customdata[5]} | MACs %{customdata[6]} | %{customdata[7]}"
            "<extra></extra>")


def plot_front(info: dict[str, Any], log_x: bool = False):
    """Metric against cost: every trial lighter, the front bold and joined by a
    staircase per run, colour by stage pattern, references as labelled stars.
    A button switches the x axis between linear and log."""
    import plotly.graph_objects as go

    pts: pd.DataFrame = info["points"]
    if "shown" in pts.columns and len(pts) and not pts["shown"].all():
        pts = pts[pts["shown"]]  # a thinned run: data.shown_mask chose what to draw
    fig = go.Figure()
    tmpl = _hover_template(info["metric_name"], info["x_label"])
    colours = colour_map(pts["pattern"]) if len(pts) else {}
    runs = list(dict.fromkeys(pts["run"])) if len(pts) else []
    symbol = {r: _RUN_SYMBOLS[i % len(_RUN_SYMBOLS)] for i, r in enumerate(runs)}
    # Legend-only entries at full colour: the faded markers would make a pale legend.
    for pattern, colour in colours.items():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=pattern,
                                 legendgroup=pattern, marker=dict(color=colour, size=9)))
    shown = set(colours)
    for pattern, colour in colours.items():
        sel = pts[(pts["pattern"] == pattern) & ~pts["on_front"]]
        if len(sel):
            fig.add_trace(go.Scatter(
                x=sel["x"], y=sel["metric"], mode="markers", name=pattern, legendgroup=pattern,
                showlegend=pattern not in shown,
                # light enough for the front to stand out, dark enough to read on white
                marker=dict(color=colour, size=7, opacity=0.6,
                            line=dict(color=colour, width=1),
                            symbol=[symbol[r] if f else symbol[r] + "-open"
                                    for r, f in zip(sel["run"], sel["full_fidelity"])]),
                customdata=_hover(sel),
                hovertemplate=tmpl))
            shown.add(pattern)
    for i, run in enumerate(runs):
        front = pts[(pts["run"] == run) & pts["on_front"]].sort_values("x")
        line = pts[(pts["run"] == run) & pts["on_line"]].sort_values("x")
        if not len(front):
            continue
        fig.add_trace(go.Scatter(
            x=line["x"], y=line["metric"], mode="lines", line_shape="hv",
            line=dict(color="#333333" if len(runs) == 1 else _PALETTE[-1 - i % 5], width=1.6,
                      dash=_RUN_DASH[i % len(_RUN_DASH)]),
            name=f"front: {run}" if len(runs) > 1 else "Pareto front", hoverinfo="skip"))
        for pattern, grp in front.groupby("pattern", sort=True):
            fig.add_trace(go.Scatter(
                x=grp["x"], y=grp["metric"], mode="markers", legendgroup=pattern,
                name=pattern, showlegend=pattern not in shown,
                marker=dict(color=colours[pattern], size=11, symbol=symbol[run],
                            line=dict(color="#222222", width=1.2)),
                customdata=_hover(grp),
                hovertemplate=tmpl))
            shown.add(pattern)
    _add_standalone(fig, pts, info["metric_name"], info["x_label"])
    refs = pts[pts["reference"].notna()] if len(pts) else pts
    if len(refs):
        fig.add_trace(go.Scatter(
            x=refs["x"], y=refs["metric"], mode="markers+text", name="reference",
            text=[str(r) for r in refs["reference"]],
            # alternate label sides so neighbouring references stay readable
            textposition=[("top center", "bottom center", "middle right")[i % 3]
                          for i in range(len(refs))],
            textfont=dict(size=11, color="#111111"),
            marker=dict(symbol="star", size=16, color="rgba(255,215,0,0.9)",
                        line=dict(color="#111111", width=1)),
            customdata=_hover(refs), hovertemplate=tmpl))
    sub = "hover a point for its architecture, params, MACs and fidelity"
    if info.get("n_shown", len(pts)) < info.get("n_points", len(pts)):
        oneshot = (info["points"]["fidelity_kind"] == "inherited").any()
        sub = (thinned_note(info["n_shown"], info["n_points"], "subnets" if oneshot else "trials")
               + "; " + sub)
    _layout(fig, "Pareto front: " + info["metric_name"] + " vs " + info["x_label"], height=520,
            subtitle=sub,
            xaxis_title=info["x_label"],
            yaxis_title=info["metric_name"], legend_title_text="stage pattern")
    fig.update_xaxes(type="log" if log_x else "linear")
    fig.update_layout(updatemenus=[dict(
        type="buttons", direction="left", x=1.0, xanchor="right", y=1.12, yanchor="top",
        showactive=True, active=1 if log_x else 0,
        buttons=[dict(label="linear x", method="relayout", args=[{"xaxis.type": "linear"}]),
                 dict(label="log x", method="relayout", args=[{"xaxis.type": "log"}])])])
    if not len(pts):
        _empty(fig, "no trial with a metric and a cost yet")
    return fig


def thinned_note(shown: int, total: int, noun: str = "trials") -> str:
    """The line a thinned figure or table carries (``noun``: "subnets" for a one-shot run)."""
    return (f"showing {shown:,} of {total:,} {noun}; front and retrained drawn in full, "
            "the rest a stable sample")


def _add_standalone(fig, pts: pd.DataFrame, metric_name: str, x_label: str) -> None:
    """One-shot runs: a legend entry for the inherited-weight points, and each
    subnet retrained on its own as a second marker at its standalone metric,
    joined to its inherited one by a thin line."""
    import plotly.graph_objects as go

    if not len(pts) or "fidelity_kind" not in pts.columns:
        return
    inherited = pts["fidelity_kind"] == "inherited"
    if not inherited.any():
        return
    # legendrank < plotly's default 1000: these lead the (long) pattern legend
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="inherited weights "
                             "(supernet)", legendrank=1,
                             marker=dict(color="#888888", size=9, symbol="circle")))
    alone = pts[np.isfinite(pts["standalone_metric"].to_numpy(dtype=float))]
    if not len(alone):
        return
    n = len(alone)
    xs = np.column_stack([alone["x"], alone["x"], np.full(n, np.nan)]).ravel()
    ys = np.column_stack([alone["metric"], alone["standalone_metric"], np.full(n, np.nan)]).ravel()
    fig.add_trace(go.Scatter(
        x=[None if np.isnan(v) else float(v) for v in xs],
        y=[None if np.isnan(v) else float(v) for v in ys], mode="lines",
        name="inherited → standalone", legendgroup="standalone", legendrank=3,
        line=dict(color="#444444", width=1, dash="dot"), hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=alone["x"], y=alone["standalone_metric"], mode="markers",
        name="standalone (retrained)", legendgroup="standalone", legendrank=2,
        marker=dict(symbol="diamond", size=12, color="rgba(0,0,0,0)",
                    line=dict(color="#111111", width=2)),
        customdata=np.stack([alone["trial_id"].astype(int), alone["metric"],
                             alone["pattern"], alone["fidelity"]], axis=1),
        hovertemplate=("<b>trial %{customdata[0]}</b> (%{customdata[2]}) retrained standalone"
                       f"<br>{metric_name} %{{y:.4f}} standalone, %{{customdata[1]:.4f}} "
                       f"inherited<br>{x_label} %{{x:.4g}} | %{{customdata[3]}}<extra></extra>")))


def _empty(fig, text: str) -> None:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font=dict(size=14, color="#666666"))


def plot_hypervolume(info: dict[str, Any], max_points: int = 2000):
    """Hypervolume of the front against device-hours spent, one line per run
    (a run of more than ``max_points`` finished trials marks only the trials
    where the front changed, and its last)."""
    import plotly.graph_objects as go

    curve: pd.DataFrame = info["curve"]
    fig = go.Figure()
    for i, (run, grp) in enumerate(curve.groupby("run", sort=False)):
        if len(grp) > max_points:  # a step line: only the steps and the end change it
            hv, size = grp["hypervolume"].to_numpy(), grp["front_size"].to_numpy()
            step = np.r_[True, (hv[1:] != hv[:-1]) | (size[1:] != size[:-1])]
            step[-1] = True
            grp = grp[step]
        fig.add_trace(go.Scatter(
            x=grp["budget_hours"], y=grp["hypervolume"], mode="lines+markers", line_shape="hv",
            name=run, marker=dict(size=5), line=dict(color=_PALETTE[i % len(_PALETTE)]),
            customdata=np.stack([grp["trial_id"], grp["front_size"]], axis=1),
            hovertemplate="after trial %{customdata[0]}<br>%{x:.3f} h<br>hypervolume "
                          "%{y:.4g}<br>front size %{customdata[1]}<extra>" + str(run) + "</extra>"))
    ref = info.get("reference")
    sub = f"reference point ({ref[0]:.4g}, {ref[1]:.4g}); still rising = more budget " \
        "would still help" if ref else ""
    _layout(fig, "Hypervolume vs budget spent", subtitle=sub,
            xaxis_title=f"{info['unit']}-hours spent (cumulative, in finish order)",
            yaxis_title="hypervolume")
    if not len(curve):
        _empty(fig, "no finished trial yet")
    return fig


def plot_block_usage(usage: pd.DataFrame):
    """Stacked share of block types per stage: all trials (left) vs the front (right)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, shared_yaxes=True,
                        subplot_titles=("all trials", "Pareto front"), horizontal_spacing=0.04)
    colours = colour_map(usage["block"]) if len(usage) else {}
    multi = usage["run"].nunique() > 1 if len(usage) else False
    def label(run, stage):
        return f"{run} S{stage}" if multi else f"stage {stage}"

    for col, group in ((1, "all"), (2, "front")):
        sel = usage[usage["group"] == group]
        # Stages in order: plotly would order categories by first appearance
        # across the traces (e.g. "stage 1, stage 3, stage 0, stage 2").
        order = [label(r, s) for r, s in sorted(set(zip(sel["run"], sel["stage"])))]
        fig.update_xaxes(categoryorder="array", categoryarray=order, row=1, col=col)
        for block, colour in colours.items():
            b = sel[sel["block"] == block]
            labels = [label(r, s) for r, s in zip(b["run"], b["stage"])]
            fig.add_trace(go.Bar(
                x=labels, y=b["fraction"], name=block, legendgroup=block, marker_color=colour,
                showlegend=col == 1, customdata=b["count"],
                hovertemplate=block + ": %{y:.0%} (%{customdata} trials)<extra></extra>"),
                row=1, col=col)
    _layout(fig, "Block type per stage: all trials vs front", barmode="stack",
            legend_title_text="block")
    fig.update_yaxes(tickformat=".0%", range=[0, 1], row=1, col=1)
    if not len(usage):
        _empty(fig, "no trial with a spec yet")
    return fig


def plot_importance(info: dict[str, Any], run_name: str = "", top: int = 15):
    """Horizontal bars: Optuna parameter importance, one colour per objective."""
    import plotly.graph_objects as go

    imp: pd.DataFrame = info["importances"]
    fig = go.Figure()
    if len(imp):
        order = (imp.groupby("param")["importance"].max().sort_values(ascending=True)
                 .index[-top:].tolist())
        for i, (obj, grp) in enumerate(imp.groupby("objective", sort=False)):
            grp = grp.set_index("param").reindex(order)
            fig.add_trace(go.Bar(y=order, x=grp["importance"], orientation="h", name=str(obj),
                                 marker_color=_PALETTE[i % len(_PALETTE)],
                                 hovertemplate="%{y}: %{x:.3f}<extra>" + str(obj) + "</extra>"))
    height = max(320, 60 + 22 * len(fig.data[0].y) * max(1, len(fig.data))) if fig.data else 320
    sub = f"{info.get('n_trials', 0)} full-fidelity trials"
    if info.get("sampled"):
        sub = (f"fitted on a seeded sample of {info.get('n_trials', 0):,} of "
               f"{info.get('n_eligible', 0):,} full-fidelity trials (trials.parquet)")
    sub += f", {run_name}" if run_name else ""
    _layout(fig, "Parameter importance per objective", subtitle=sub, height=min(height, 900),
            barmode="group",
            xaxis_title="importance (fANOVA, sums to 1 per objective)")
    if not len(imp):
        _empty(fig, info.get("note") or "not enough trials")
    return fig


def _joined(df: pd.DataFrame, col: str) -> list:
    """Trials' curves as one line with gaps (None) between trials: one trace per
    group keeps the page fast with thousands of trials. Rows come trial by trial."""
    if not len(df):
        return []
    keys = (df["run"].astype(str) + "\x00" + df["trial_id"].astype(str)).to_numpy()
    breaks = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    return np.insert(df[col].to_numpy(dtype=object), breaks, None).tolist() + [None]


def plot_learning_curves(curves: pd.DataFrame, metric_name: str = "metric"):
    """Metric per epoch; full runs solid (colour by pattern), early-stopped
    trials dashed grey ending in a cross, running trials dotted."""
    import plotly.graph_objects as go

    fig = go.Figure()
    colours = colour_map(curves["pattern"]) if len(curves) else {}
    done = curves[~curves["early_stopped"] & (curves["status"] != "RUNNING")]
    for pattern, grp in done.groupby("pattern", sort=True):
        fig.add_trace(go.Scatter(
            x=_joined(grp, "epoch"), y=_joined(grp, "value"), mode="lines", name=pattern,
            legendgroup=pattern, line=dict(color=colours[pattern], width=1.3),
            customdata=_joined(grp, "trial_id"),
            hovertemplate="trial %{customdata} epoch %{x}: %{y:.4f}<extra>" + pattern
                          + "</extra>"))
    for label, sel, dash, colour in (
            ("early-stopped", curves[curves["early_stopped"]], "dash", "rgba(120,120,120,0.8)"),
            ("running", curves[curves["status"] == "RUNNING"], "dot", "rgba(30,30,30,0.9)")):
        if not len(sel):
            continue
        fig.add_trace(go.Scatter(
            x=_joined(sel, "epoch"), y=_joined(sel, "value"), mode="lines", name=label,
            line=dict(color=colour, width=1.2, dash=dash), customdata=_joined(sel, "trial_id"),
            hovertemplate="trial %{customdata} epoch %{x}: %{y:.4f}<extra>" + label + "</extra>"))
        last = sel.groupby(["run", "trial_id"], sort=False).tail(1)
        fig.add_trace(go.Scatter(
            x=last["epoch"], y=last["value"], mode="markers", name=label + " (last epoch)",
            legendgroup=label, showlegend=False, customdata=last["trial_id"],
            marker=dict(symbol="x" if label == "early-stopped" else "circle-open", size=8,
                        color=colour),
            hovertemplate="trial %{customdata} stopped at epoch %{x}: %{y:.4f}<extra></extra>"))
    _layout(fig, "Learning curves", xaxis_title="epoch", yaxis_title=metric_name)
    if not len(curves):
        _empty(fig, "no learning curve recorded yet")
    return fig


def _scatter_per_run(fig, pts: pd.DataFrame, x: str, y: str, hover: str) -> None:
    """One marker trace per run of ``pts`` (columns run, trial_id, pattern,
    ``x``, ``y``); ``hover`` follows the trial id and pattern."""
    import plotly.graph_objects as go

    for i, (run, grp) in enumerate(pts.groupby("run", sort=False)):
        fig.add_trace(go.Scatter(
            x=grp[x], y=grp[y], mode="markers", name=str(run),
            marker=dict(size=7, color=_PALETTE[i % len(_PALETTE)],
                        symbol=_RUN_SYMBOLS[i % len(_RUN_SYMBOLS)]),
            customdata=np.stack([grp["trial_id"], grp["pattern"]], axis=1),
            hovertemplate=f"trial %{{customdata[0]}} (%{{customdata[1]}})<br>{hover}<extra></extra>"))


def plot_latency_prediction(info: dict[str, Any]):
    """Predicted against measured latency, with the y = x line and MAPE / rank
    correlation in the title."""
    import plotly.graph_objects as go

    pts: pd.DataFrame = info["points"]
    fig = go.Figure()
    drawn = pts[pts["shown"]] if "shown" in pts.columns else pts
    _scatter_per_run(fig, drawn, "measured", "predicted",
                     "measured %{x:.3g} ms<br>predicted %{y:.3g} ms")
    if len(pts):
        lo = float(min(pts["measured"].min(), pts["predicted"].min()))
        hi = float(max(pts["measured"].max(), pts["predicted"].max()))
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                                 line=dict(color="#999999", dash="dash"), hoverinfo="skip"))
    stats = []
    if math.isfinite(info.get("mape", math.nan)):
        stats.append(f"MAPE {info['mape']:.1f}%")
    if math.isfinite(info.get("spearman", math.nan)):
        stats.append(f"Spearman {info['spearman']:.3f}")
    if len(drawn) < len(pts):
        stats.append(f"showing {len(drawn):,} of {len(pts):,}")
    _layout(fig, "Predicted vs measured latency", subtitle=", ".join(stats),
            xaxis_title="measured latency (ms)", yaxis_title="predicted latency (ms)")
    if not len(pts):
        _empty(fig, "no trial has both a predicted and a measured latency")
    return fig


def plot_fidelity(info: dict[str, Any]):
    """Proxy metric against the retrained (higher-fidelity) metric, one marker
    per retrained trial, with Kendall tau in the title."""
    import plotly.graph_objects as go

    pts: pd.DataFrame = info["points"]
    stats: pd.DataFrame = info["stats"]
    name = info.get("metric_name", "metric")
    fig = go.Figure()
    _scatter_per_run(fig, pts, "proxy", "fidelity", "proxy %{x:.4f}<br>retrained %{y:.4f}")

    def fmt(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"

    taus = [f"{r.run}: " if len(stats) > 1 else "" for r in stats.itertuples()]
    title = "Proxy fidelity" + (": Kendall τ " + ", ".join(
        f"{p}{fmt(r.kendall_tau)}" for p, r in zip(taus, stats.itertuples())) if len(stats) else "")

    def compared(r) -> str:
        if getattr(r, "proxy_kind", "proxy") == "inherited":
            return f"{r.n} subnets, inherited weights vs retrained standalone {r.epochs} epochs"
        return f"{r.n} trials, proxy {r.proxy_epochs} epochs vs {r.epochs} epochs on {r.subset} images"

    sub = "; ".join(f"{compared(r)}, Spearman {fmt(r.spearman)}, top-{r.k} overlap "
                    f"{fmt(r.top_k_overlap)}" for r in stats.itertuples())
    inherited = len(stats) and "proxy_kind" in stats and (stats["proxy_kind"] == "inherited").all()
    _layout(fig, title, subtitle=sub,
            xaxis_title=f"{name} ({'inherited weights' if inherited else 'search proxy'})",
            yaxis_title=f"{name} (retrained)")
    if not len(pts):
        _empty(fig, "no trial retrained yet (hybridnas fidelity RUN --sample K --epochs E)")
    return fig
