"""The monitoring report: one self-contained HTML page (plots inline, drawn as the training report draws them).

Per production model: the live metric over time against the walk-forward folds' range and the baselines, the signal
(IC) beside the walk-forward's, the PSI of its predictions and most-drifted features over time, every checked name's
PSI by day against its own alert level, the distribution of its served predictions against the training reference;
the challengers in shadow; the alert rules that hold and what the monitor did about them.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from monitoring.live_drift import PREDICTION, SERVED, served_predictions
from training.evaluation.drift_reference import Reference, shares
from training.evaluation.report import STYLE, png_img
from training.evaluation.walk_forward import clean_json

if TYPE_CHECKING:
    from monitoring.job import ModelStatus, MonitorRun

#: Features drawn in a model's PSI plot: the most drifted on the last day.
PLOTTED_FEATURES = 6


def write_report(run: MonitorRun, directory: Path) -> Path:
    """``index.html`` and ``status.json`` of ``run`` in ``directory``; the page's path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "status.json").write_text(json.dumps(clean_json(run.to_dict()), indent=2, default=str))
    sections = [_section(run, status) for status in run.models.values()]
    trigger = run.trigger or {}
    acted = (f"<p><b>retrain triggered</b> ({html.escape(str(trigger.get('deployment')))}, flow run "
             f"{html.escape(str(trigger.get('flow_run_id')))}): {html.escape(str(trigger.get('reason')))}</p>"
             if trigger.get("triggered") else f"<p>no retrain triggered: {html.escape(str(trigger.get('why', '')))}"
             "</p>")  # fmt: skip
    alerts = "".join(f"<li>{html.escape(a)}</li>" for a in run.alerts) or "<li>none</li>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Monitoring {run.at}</title>
<style>{STYLE}</style></head><body>
<h1>Monitoring</h1><p class="meta">{run.at} · {run.rows:,} recorded answers · {run.ingest.new:,} new this run</p>
<h2>Alert rules</h2><ul>{alerts}</ul>{acted}
{"".join(sections)}
</body></html>"""
    path = directory / "index.html"
    path.write_text(page)
    return path


def _section(run: MonitorRun, status: ModelStatus) -> str:
    score = status.score
    parts = [f"<h2>{html.escape(status.model)} <span class='meta'>{html.escape(status.version)}</span></h2>"]
    if status.card is None:
        return parts[0] + "<p>no card in this model store: not scored</p>"
    parts.append(f"<p>{html.escape(score.statement if score else '')}</p>")
    parts.append(f"<p class='meta'>{status.pending} answer(s) pending; unscorable: "
                 f"{html.escape(json.dumps(status.unscorable)) if status.unscorable else 'none'}</p>")  # fmt: skip
    if score is not None and score.live:
        parts.append(_table(score.metric, score.live, score.baselines))
    if score is not None and score.signal:
        parts.append(_signal_table(score.signal))
    plots = []
    if score is not None and score.rolling is not None and not score.rolling.empty:
        plots.append(_rolling_plot(score.rolling, score.metric, score.band, status.model))
    if score is not None and score.regimes is not None:
        parts.append(f"<p>{html.escape(score.regimes['statement'])}</p>")
    if status.drift is not None and not status.drift.daily.empty:
        plots.append(_psi_plot(status.drift.daily, status.model, run.rules.warn, run.rules.alert))
        plots.append(_psi_map(status.drift.daily, status.model))
    served = run.frame[(run.frame["model"] == status.model) & (run.frame["version"] == status.version)]
    reference = (status.card.drift_reference or {}).get("predictions")
    if reference and len(served):
        plots.append(_distribution_plot(status, served, Reference.from_dict(reference)))
    parts.append(f"<div class='plots'>{''.join(plots)}</div>")
    if status.drift is not None and status.drift.source != SERVED:
        parts.append(f"<p class='meta'>drift taken over the {html.escape(status.drift.source)}</p>")
    if status.drift is not None and status.drift.skipped:
        parts.append(f"<p class='meta'>no PSI: {html.escape(json.dumps(status.drift.skipped))}</p>")
    if status.drift is not None and status.drift.reported_only:
        parts.append(f"<p class='meta'>drawn, not acted on: {html.escape(json.dumps(status.drift.reported_only))}</p>")
    for challenger in status.challengers:
        parts.append(f"<p><b>challenger {html.escape(challenger.version)}</b> in shadow: "
                     f"{html.escape(challenger.statement)}</p>")  # fmt: skip
    return "".join(parts)


def _table(metric: str, live: dict[str, float], baselines: dict[str, dict[str, float]]) -> str:
    names = [k for k in live if k not in ("n", "n_dropped")]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["", *names])
    rows = [("live", live), *baselines.items()]
    body = "".join(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_number(m.get(n))}</td>" for n in names)
                   + "</tr>" for name, m in rows)  # fmt: skip
    return f"<table><tr>{head}</tr>{body}</table><p class='meta'>primary metric: {html.escape(metric)}</p>"


def _signal_table(signal: dict[str, Any]) -> str:
    """The live IC (Pearson and rank, with the rank IC's 95 % HAC interval) beside the walk-forward's."""
    head = "<tr><th></th><th>IC</th><th>rank IC</th><th>rank IC 95 %</th><th>rank ICIR</th><th>evidence</th></tr>"
    body = ""
    for name, ic in signal.items():
        if name == "kind" or not isinstance(ic, dict) or "rank" not in ic:
            continue
        rank = ic["rank"]
        label = "walk-forward (card)" if name == "walk_forward" else f"live: {name}"
        body += (f"<tr><td>{html.escape(label)}</td><td>{_number(ic['pearson'].get('mean'))}</td>"
                 f"<td>{_number(rank.get('mean'))}</td><td>{_number(rank.get('ci_low'))} .. "
                 f"{_number(rank.get('ci_high'))}</td><td>{_number(rank.get('ir'))}</td>"
                 f"<td>{html.escape(str(rank.get('evidence', '')))}</td></tr>")  # fmt: skip
    return f"<table>{head}{body}</table><p class='meta'>signal: information coefficient of the served answers</p>"


def _number(value: Any) -> str:
    return "" if not isinstance(value, int | float) or not np.isfinite(value) else f"{value:.4g}"


def _rolling_plot(rolling: pd.DataFrame, metric: str, band: tuple[float, float] | None, model: str) -> str:
    figure, axis = plt.subplots(figsize=(6.4, 3.4))
    days = pd.to_datetime(rolling["as_of"])
    if band is not None:
        axis.axhspan(band[0], band[1], color="tab:green", alpha=0.15, label="walk-forward folds")
    for column in rolling.columns[3:]:
        axis.plot(days, rolling[column], lw=1, ls="--", label=f"baseline: {column}")
    axis.plot(days, rolling["model"], lw=1.6, color="black", label="live")
    axis.set_title(f"{model}: {metric}, rolling window")
    axis.legend(fontsize=7)
    figure.autofmt_xdate()
    return png_img(figure)


def _psi_plot(daily: pd.DataFrame, model: str, warn: float, alert: float) -> str:
    """The predictions' and the most drifted features' daily PSI, the rules' warn and alert levels, and the
    predictions' own alert level where the card's calibration set it (every name's own level: :func:`_psi_map`)."""
    figure, axis = plt.subplots(figsize=(6.4, 3.4))
    last = daily[daily["as_of"] == daily["as_of"].max()].sort_values("psi", ascending=False)
    names = [PREDICTION, *[n for n in last["name"] if n != PREDICTION][:PLOTTED_FEATURES]]
    for name in names:
        part = daily[daily["name"] == name]
        days = pd.to_datetime(part["as_of"])
        (line,) = axis.plot(days, part["psi"], lw=2 if name == PREDICTION else 1, label=name)
        if name == PREDICTION and not np.allclose(part["alert_at"], alert):  # calibrated (monitoring/drift.py)
            axis.plot(days, part["alert_at"], lw=0.8, ls="--", color=line.get_color(), label="its alert level")
    axis.axhline(warn, color="orange", lw=0.8, ls=":", label=f"warn {warn:g}")
    axis.axhline(alert, color="red", lw=0.8, ls=":", label=f"alert {alert:g}")
    axis.set_yscale("symlog", linthresh=0.1)
    axis.set_ylim(bottom=0.0)
    axis.set_title(f"{model}: PSI by day (predictions and most drifted features)")
    axis.legend(fontsize=6, ncol=2, loc="lower right")
    figure.autofmt_xdate()
    return png_img(figure)


def _psi_map(daily: pd.DataFrame, model: str) -> str:
    """Every checked name's PSI by day as a share of its own alert level (1: at the level), one row a name."""
    table = daily.assign(share=daily["psi"] / daily["alert_at"]).pivot_table("share", "name", "as_of", sort=True)
    figure, axis = plt.subplots(figsize=(6.4, max(2.4, 0.16 * len(table) + 1.2)))
    image = axis.imshow(table.to_numpy(float), aspect="auto", cmap="RdYlGn_r", vmin=0.0, vmax=2.0,
                        interpolation="nearest")  # fmt: skip
    axis.set_yticks(range(len(table)), table.index, fontsize=6)
    ticks = np.linspace(0, table.shape[1] - 1, min(6, table.shape[1])).astype(int)
    axis.set_xticks(ticks, table.columns[ticks], fontsize=7)
    figure.colorbar(image, ax=axis, label="PSI / alert level")
    axis.set_title(f"{model}: PSI of every feature and the predictions by day")
    return png_img(figure)


def _distribution_plot(status: ModelStatus, served: pd.DataFrame, ref: Reference) -> str:
    from features.catalog import model_kind

    values = served_predictions(model_kind(status.model).task, served)
    values = values[np.isfinite(values)]
    figure, axis = plt.subplots(figsize=(6.4, 3.4))
    if values.size:
        positions = np.arange(len(ref.shares))
        axis.bar(positions - 0.2, ref.shares, width=0.4, label="training reference")
        axis.bar(positions + 0.2, shares(values, ref.edges), width=0.4, label=f"served ({values.size:,})")
        axis.set_xlabel("reference bin (equal-count at training)")
        axis.legend(fontsize=7)
    axis.set_title(f"{status.model}: served predictions against the reference")
    return png_img(figure)
