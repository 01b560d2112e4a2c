"""The training report: one self-contained HTML page (plots inline) and the metrics as JSON."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from training.evaluation.report_quant import quant_section
from training.evaluation.run_fields import CardFields, ModelResult, SkillFields, TrainingRun
from training.evaluation.symbols import WITHOUT_SYMBOL_FIGURE
from training.evaluation.walk_forward import clean_json

if TYPE_CHECKING:
    from training.dataset import Panel


STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{margin-bottom:.2rem} h2{margin-top:2.5rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.8rem 0} td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
th{background:#f5f5f5} td:first-child,th:first-child{text-align:left}
.better{background:#e3f4e3} .worse{background:#fbe5e5} .meta{color:#666;font-size:.9rem}
.warn{background:#fff4d6;border:1px solid #e6c35c;padding:.5rem .8rem} img{max-width:100%}
.skill{padding:.3rem .6rem;display:inline-block}
.plots{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
.synthetic{font-size:1.2rem;background:#fde2c8;border-color:#d9822b}
"""
#: What the banner of a report on a synthetic snapshot says.
SYNTHETIC_BANNER = (
    '<div class="warn synthetic"><b>synthetic data</b>: this run was trained on a synthetic universe, made for scale'
    " tests and benchmarks. Its figures say how the code scales, nothing about any market.</div>"
)
#: The snapshot source of a synthetic universe (``mlops data pull --source synthetic``).
SYNTHETIC_SOURCE = "synthetic"


def png_img(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _metrics_table(result: ModelResult) -> str:
    evaluation = result.evaluation
    names = [k for k in evaluation.metrics if k not in ("n", "n_dropped")]
    header = "".join(f"<th>{html.escape(n)}</th>" for n in ["", *names])
    rows = [f"<tr><td><b>{html.escape(result.name)}</b></td>{_cells(evaluation.metrics, names)}</tr>"]
    for baseline, metrics in evaluation.baselines.items():
        rows.append(f"<tr><td>{html.escape(baseline)}</td>{_cells(metrics, names)}</tr>")
    verdicts = []
    for baseline in evaluation.baselines:
        if evaluation.primary_metric in evaluation.baselines[baseline]:
            beats = evaluation.beats(baseline)
            css = "better" if beats else "worse"
            word = "beats" if beats else "does not beat"
            verdicts.append(f'<span class="{css}">{word} {html.escape(baseline)}</span>')
    verdict = f"<p>On {html.escape(evaluation.primary_metric)}: {', '.join(verdicts)}.</p>" if verdicts else ""
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>{verdict}"


def _cells(metrics: dict[str, float], names: list[str]) -> str:
    def fmt(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, int | float) else "–"

    return "".join(f"<td>{fmt(metrics.get(n))}</td>" for n in names)


def _importance_plot(importance: dict[str, float]) -> str:
    items = sorted(importance.items(), key=lambda kv: kv[1])[-15:]
    figure, ax = plt.subplots(figsize=(5.5, 4))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4c72b0")
    ax.set_title("feature importance (share of gain, mean over folds)")
    return png_img(figure)


def _prediction_plot(result: ModelResult) -> str:
    frame = result.evaluation.predictions
    symbol = sorted(frame["symbol"].unique())[0]
    part = frame[frame["symbol"] == symbol].sort_values("date")
    figure, ax = plt.subplots(figsize=(5.5, 4))
    dates = pd.to_datetime(part["date"])
    if result.evaluation.task == "direction_classification":
        bins = np.linspace(0.4, 0.7, 13)
        p, y = frame["prediction"].to_numpy(), frame["actual"].to_numpy()
        index = np.digitize(p, bins)
        xs = [p[index == i].mean() for i in np.unique(index)]
        ys = [y[index == i].mean() for i in np.unique(index)]
        ax.plot(xs, ys, "o-", label="model (walk-forward)")
        ax.plot([0.4, 0.7], [0.4, 0.7], "--", color="grey", label="perfect calibration")
        ax.set_xlabel("predicted P(up)")
        ax.set_ylabel("observed up rate")
        ax.set_title("calibration of P(up), all symbols")
    else:
        window = 21 if result.evaluation.task == "return_regression" else 1
        ax.plot(dates, part["actual"].rolling(window).mean(), color="black", lw=0.8, label="outcome")
        ax.plot(dates, part["prediction"].rolling(window).mean(), color="#c44e52", lw=0.9, label="model")
        for column in [c for c in part.columns if c.startswith("baseline_")]:
            ax.plot(
                dates, part[column].rolling(window).mean(), lw=0.7, alpha=0.8, label=column.removeprefix("baseline_")
            )
        smoothing = f" ({window}-day mean)" if window > 1 else ""
        ax.set_title(f"walk-forward predictions vs outcome, {symbol}{smoothing}")
        figure.autofmt_xdate()
    ax.legend(fontsize=8)
    return png_img(figure)


#: Per-symbol plots (regimes over the close, forecast fans) drawn for this many symbols at most: a universe's report
#: shows a few and says how many it left out (the per-symbol table and scatter cover them all).
PLOTTED_SYMBOLS = 8


def _not_drawn(count: int) -> str:
    left = count - PLOTTED_SYMBOLS
    return f"<p>Drawn for the first {PLOTTED_SYMBOLS} symbols; {left} more not drawn.</p>" if left > 0 else ""


def _regime_plot(result: ModelResult) -> str:
    frame = result.evaluation.predictions
    names = result.fitted.extra.get("state_names", [])
    colours = ["#55a868", "#dd8452", "#c44e52", "#8172b2", "#64b5cd"]
    plots = []
    symbols = sorted(frame["symbol"].unique())
    for symbol in symbols[:PLOTTED_SYMBOLS]:
        part = frame[frame["symbol"] == symbol].sort_values("date")
        dates = pd.to_datetime(part["date"]).to_numpy()
        figure, ax = plt.subplots(figsize=(11, 3.2))
        ax.plot(dates, part["close"], color="black", lw=0.7)
        states = part["prediction"].to_numpy().astype(int)
        for state in np.unique(states):
            label = names[state] if state < len(names) else f"state {state}"
            ax.fill_between(
                dates,
                0,
                1,
                where=states == state,
                color=colours[state % len(colours)],
                alpha=0.3,
                transform=ax.get_xaxis_transform(),
                label=label,
                step="mid",
                linewidth=0,
            )
        ax.set_yscale("log")
        ax.set_title(f"{symbol}: regimes over the close (final model, Viterbi)")
        ax.legend(fontsize=8, loc="upper left")
        plots.append(png_img(figure))
    return _not_drawn(len(symbols)) + "".join(plots)


def _fan_plot(result: ModelResult) -> str:
    fans = result.fitted.report.get("fan") or result.evaluation.extras.get("fan") or {}
    plots = [_not_drawn(len(fans))]
    for symbol, fan in list(fans.items())[:PLOTTED_SYMBOLS]:
        figure, ax = plt.subplots(figsize=(5.5, 3.5))
        history_dates = pd.to_datetime(fan.get("history_dates", []))
        ax.plot(history_dates, fan.get("history_close", []), color="black", lw=0.8, label="close")
        dates = pd.to_datetime(fan["dates"])
        ax.plot(dates, fan["price"], color="#4c72b0", label="forecast")
        ax.fill_between(dates, fan["lower"], fan["upper"], color="#4c72b0", alpha=0.25, label="interval")
        ax.set_title(f"{symbol}: Prophet forecast fan from the last close")
        ax.legend(fontsize=8)
        figure.autofmt_xdate()
        plots.append(png_img(figure))
    return "".join(plots)


def _horizon_plot(result: ModelResult) -> str:
    by_horizon = result.evaluation.extras.get("mape_by_horizon")
    if not by_horizon:
        return ""
    figure, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, values in by_horizon.items():
        horizons = sorted(int(h) for h in values)
        ax.plot(horizons, [values[h] if h in values else values[str(h)] for h in horizons], "o-", label=name)
    ax.set_xlabel("horizon (trading days)")
    ax.set_ylabel("MAPE %")
    ax.set_title("walk-forward MAPE by horizon")
    ax.legend(fontsize=8)
    return png_img(figure)


def _coverage_plot(result: ModelResult) -> str:
    """The share of realised closes inside the forecast intervals, per horizon, against the nominal level."""
    coverage = result.evaluation.extras.get("coverage_by_horizon")
    level = result.evaluation.extras.get("interval_level")
    if not coverage or level is None:
        return ""
    horizons = sorted(int(h) for h in coverage)
    figure, ax = plt.subplots(figsize=(5.5, 3.5))
    values = [100 * (coverage[h] if h in coverage else coverage[str(h)]) for h in horizons]
    ax.plot(horizons, values, "o-", label="realised closes inside")
    ax.axhline(100 * level, color="black", lw=0.8, label=f"nominal {100 * level:.0f} %")
    ax.axhspan(100 * level - 5, 100 * level + 5, color="grey", alpha=0.2, label="within 5 points")
    ax.set_xlabel("horizon (trading days)")
    ax.set_ylabel("coverage %")
    folds = result.evaluation.folds
    period = f"{folds[0]['test_start'][:4]}-{folds[-1]['test_end'][:4]}" if folds else ""
    ax.set_title(f"interval coverage by horizon, walk-forward {period}")
    ax.legend(fontsize=8)
    return png_img(figure)


def _symbol_plot(result: ModelResult) -> str:
    """Each symbol's walk-forward metric, the model's against its best baseline's: above the diagonal the model
    is better for a higher-is-better metric, below it for an error; the worst symbols named."""
    table = result.evaluation.symbol_scores
    if table is None or table.scores.empty:
        return ""
    scores = table.scores
    figure, ax = plt.subplots(figsize=(5.5, 4))
    beats = scores["beats"].to_numpy(dtype=bool)
    for mask, colour, label in ((beats, "#55a868", "model better"), (~beats, "#c44e52", "baseline as good or better")):
        ax.scatter(scores["baseline"][mask], scores["model"][mask], s=14, color=colour, label=label)
    low = float(min(scores["baseline"].min(), scores["model"].min()))
    high = float(max(scores["baseline"].max(), scores["model"].max()))
    ax.plot([low, high], [low, high], "--", color="grey", lw=0.8)
    for _, row in scores.nlargest(3, "shortfall").iterrows():
        ax.annotate(str(row["symbol"]), (row["baseline"], row["model"]), fontsize=7)
    ax.set_xlabel(f"{table.baseline} {table.metric}")
    ax.set_ylabel(f"model {table.metric}")
    ax.set_title(f"{table.metric} by symbol, {len(scores)} symbols")
    ax.legend(fontsize=8)
    return png_img(figure)


def _value(value: float) -> str:
    return f"{value:.4g}" if np.isfinite(value) else "–"


def by_symbol_table(card: CardFields, task: str) -> str:
    """The spread across symbols of the walk-forward metric, the model's beside its best baseline's: median, worst
    decile, the share of symbols where the model beats the baseline, the worst symbols and those not scored."""
    spread = card.by_symbol
    if spread is None:
        why = WITHOUT_SYMBOL_FIGURE.get(task, "none on this card")
        return f"<p class='meta'><b>By symbol:</b> no per-symbol figure ({html.escape(why)})</p>"
    decile = f"worst decile ({spread.worst_decile_quantile:.0%} quantile)"
    header = f"<tr><th>{html.escape(spread.metric)} by symbol</th><th>median</th><th>{decile}</th></tr>"
    rows = "".join(
        f"<tr><td>{label}</td><td>{_value(s.median)}</td><td>{_value(s.worst_decile)}</td></tr>"
        for label, s in (("<b>model</b>", spread.model), (html.escape(spread.baseline), spread.baseline_spread))
    )
    wins = round(spread.beats_baseline_share * spread.scored) if spread.scored else 0
    share = _value(spread.beats_baseline_share)
    worst = ", ".join(f"{html.escape(w.symbol)} ({_value(w.model)} vs {_value(w.baseline)})" for w in spread.worst)
    unscored = "; ".join(f"{html.escape(k)}: {html.escape(v)}" for k, v in spread.unscored.items())
    return (
        f"<table class='by-symbol'>{header}{rows}</table>"
        f"<p>Beats {html.escape(spread.baseline)} on {wins} of {spread.scored} scored symbols (share {share};"
        f" {spread.symbols} in all). Worst against {html.escape(spread.baseline)}: {worst or '–'}."
        f"{f' Not scored: {unscored}.' if unscored else ''}</p>"
    )


def skill_line(card: CardFields) -> str:
    """Whether the model showed skill over its baseline, as its card tells every client (the regime HMM has none)."""
    skill = card.skill
    if skill is None:
        return "<p class='skill'><b>Skill:</b> no baseline to beat (judged by label stability across refits)</p>"
    css = "better" if skill.shown else "worse"
    return f"<p class='skill {css}'><b>Skill:</b> {html.escape(skill.statement)}</p>"


def _section(result: ModelResult) -> str:
    card = result.card
    task = result.evaluation.task
    audit = card.leakage_audit
    warning = ""
    if not audit.get("passed", True):
        findings = "".join(f"<li>{html.escape(f)}</li>" for f in audit["findings"])
        warning = f'<div class="warn"><b>Leakage audit: suspicious.</b><ul>{findings}</ul></div>'
    plots = []
    if task == "regime_detection":
        plots.append(_regime_plot(result))
    elif task == "price_forecast":
        plots += [_horizon_plot(result), _coverage_plot(result), _fan_plot(result)]
    else:
        plots.append(_prediction_plot(result))
        if "feature_importance" in result.evaluation.extras:
            plots.append(_importance_plot(result.evaluation.extras["feature_importance"]))
    meta = (
        f"<p class='meta'>{html.escape(result.tag)} · task {html.escape(task)} · target {html.escape(card.target)}"
        f" (horizon {card.horizon}) · {html.escape(card.pooling)} · {card.walk_forward['folds']} walk-forward folds"
        f" {card.walk_forward['test_start']}..{card.walk_forward['test_end']}"
        f" · evaluate {result.evaluate_seconds:.1f} s, final fit {result.fit_seconds:.1f} s</p>"
    )
    plots.append(_symbol_plot(result))
    wide = task == "regime_detection"
    body = "".join(plots) if wide else f"<div class='plots'>{''.join(plots)}</div>"
    skill = skill_line(card)
    spread = by_symbol_table(card, task)
    quant = quant_section(result, png_img)
    return f"<h2>{html.escape(result.name)}</h2>{meta}{skill}{warning}{_metrics_table(result)}{spread}{body}{quant}"


def _skill_json(skill: SkillFields | None) -> dict[str, Any] | None:
    return None if skill is None else {"shown": skill.shown, "statement": skill.statement}


def write_report(run: TrainingRun, panel: Panel, directory: Path) -> Path:
    """Write ``index.html`` and ``metrics.json`` for a run into ``directory``; return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    synthetic = run.snapshot.source == SYNTHETIC_SOURCE
    metrics = {
        "run_id": run.run_id,
        "synthetic": synthetic,
        "snapshot": run.snapshot.to_dict(),
        "config": run.config.to_dict(),
        "feature_spec": panel.spec.to_dict(),
        "models": {
            r.name: {
                "tag": r.tag,
                "audit": r.card.leakage_audit,
                "skill": _skill_json(r.card.skill),
                "by_symbol": None if r.card.by_symbol is None else r.card.by_symbol.model_dump(),
                **r.evaluation.to_dict(),
            }
            for r in run.results
        },
        "failures": run.failures,
    }
    (directory / "metrics.json").write_text(json.dumps(clean_json(metrics), indent=2))
    failures = "".join(
        f'<div class="warn"><b>{html.escape(n)} failed</b><pre>{html.escape(e)}</pre></div>'
        for n, e in run.failures.items()
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Training report {run.run_id}</title>"
        f"<style>{STYLE}</style></head><body><h1>Training report{' (synthetic data)' if synthetic else ''}</h1>"
        f"{SYNTHETIC_BANNER if synthetic else ''}"
        f"<p class='meta'>run {run.run_id} · snapshot {run.snapshot.id} ({', '.join(run.snapshot.symbols)},"
        f" {run.snapshot.start}..{run.snapshot.end}) · FeatureSpec {panel.spec.version_hash}"
        f"{' · quick mode' if run.config.quick_mode else ''}</p>"
        f"<p>Every model is scored out of sample by expanding-window walk-forward with purged targets, beside"
        f" naive baselines. Green: the model beats that baseline on its primary metric. <b>Skill</b> says whether"
        f" it beat its strongest baseline, as its card tells every client of the service.</p>"
        f"{failures}{''.join(_section(r) for r in run.results)}</body></html>"
    )
    (directory / "index.html").write_text(page)
    return directory
