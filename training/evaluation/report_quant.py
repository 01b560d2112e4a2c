"""The training report's quant section of a model (``training/evaluation/quant.py``'s figures): plots, labelled with
their data, period and costs, and the sentences a quant reads first."""

from __future__ import annotations

import html
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from training.evaluation.backtest import Returns
from training.evaluation.run_fields import ModelResult

EVIDENCE = {
    "positive": "positive evidence of skill (interval above zero)",
    "negative": "evidence of inverse skill (interval below zero)",
    "none": "no evidence of skill (interval covers zero)",
}
HAC_NAMES = {"uniform": "Hansen-Hodrick", "bartlett": "Newey-West"}


def quant_section(result: ModelResult, png: Any) -> str:
    """The section's HTML (empty for a model without quant figures); ``png`` turns a figure into an ``<img>``."""
    quant, series = result.evaluation.quant, result.evaluation.quant_series
    if quant and "by_year" in quant:  # the regime model's out-of-sample outcomes
        lines, plots = [regime_sentence(quant)], [png(_regime_year_plot(quant, _data_label(result)))]
        return _section(lines, plots)
    if not quant or series is None:
        return ""
    data = _data_label(result)
    lines = [ic_sentence(quant["ic"])]
    plots = [png(_ic_plot(series.ic, quant["ic"], data))]
    if "quantiles" in quant:
        plots.append(png(_quantile_plot(quant["quantiles"], result.card.horizon, data)))
    if "backtest" in quant:
        backtest = quant["backtest"]
        lines.append(backtest_sentence(backtest))
        plots.append(png(_equity_plot(series.strategies, backtest["costs_bp"], data, "after costs")))
    if "calibration" in quant:
        plots.append(png(_reliability_plot(quant["calibration"], data)))
    if "vol_targeting" in quant:
        books = quant["vol_targeting"]
        lines.append(vol_targeting_sentence(books))
        title = f"volatility targeting at {books['target']:.0%}"
        plots.append(png(_equity_plot(series.strategies, books["costs_bp"], data, title)))
    return _section(lines, plots)


def _section(lines: list[str], plots: list[str]) -> str:
    text = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    return f"<h3>In a quant's terms</h3>{text}<div class='plots'>{''.join(plots)}</div>"


def _data_label(result: ModelResult) -> str:
    card = result.card
    symbols = card.symbols if len(card.symbols) <= 3 else [f"{len(card.symbols)} symbols"]
    synthetic = ", synthetic" if card.synthetic else ""
    return f"{', '.join(symbols)}{synthetic}, {card.walk_forward['test_start']}..{card.walk_forward['test_end']}"


def ic_sentence(ic: dict[str, Any]) -> str:
    rank = ic["rank"]
    kind = "per date across symbols" if ic["kind"] == "cross_sectional" else "over time, per symbol"
    return (
        f"Rank IC ({kind}) {rank['mean']:.4f}, 95 % interval [{rank['ci_low']:.4f}, {rank['ci_high']:.4f}] "
        f"({HAC_NAMES[rank.get('kernel', 'bartlett')]}, {rank['lags']} lags): {EVIDENCE[rank['evidence']]}. "
        f"ICIR {rank['ir']:.2f} over {rank['periods']} {ic['period']}s; Pearson IC {ic['pearson']['mean']:.4f}."
    )


def backtest_sentence(backtest: dict[str, Any]) -> str:
    cost = f"{backtest['costs_bp'][0]:g}"
    strategies = backtest["strategies"]
    ours, hold = strategies["long_flat"], strategies["buy_and_hold"]
    sharpe, hold_sharpe = ours["by_cost"][cost]["sharpe"], hold["by_cost"][cost]["sharpe"]
    edge, side = ours["break_even_bp"], ours.get("beats_benchmark", "below" if ours["break_even_bp"] else "never")
    even = {
        "never": "it does not beat buy-and-hold at any cost",
        "always": "it beats buy-and-hold at every cost",
        "below": f"its edge over buy-and-hold disappears at {edge:.1f} bp a side",
        "above": f"it earns less than buy-and-hold before costs and beats it only above {edge:.1f} bp a side, by "
        "trading less",
    }[side]
    return (
        f"Long/flat on the signal, after {cost} bp a side: Sharpe {sharpe:.2f} against buy-and-hold's "
        f"{hold_sharpe:.2f}; {even}."
    )


def vol_targeting_sentence(books: dict[str, Any]) -> str:
    cost = f"{books['costs_bp'][0]:g}"
    parts = [
        f"{name} {book['tracking_rmse']:.4f} (Sharpe {book['by_cost'][cost]['sharpe']:.2f})"
        for name, book in books["forecasts"].items()
    ]
    best = min(books["forecasts"], key=lambda name: books["forecasts"][name]["tracking_rmse"])
    verdict = "the model's forecast tracks it best" if best == "model" else f"{best}'s forecast tracks it better"
    return (
        f"Targeting {books['target']:.0%} volatility, root mean square distance of the realised volatility from the "
        f"target per symbol and year, after {cost} bp a side: {'; '.join(parts)}: {verdict}."
    )


def regime_sentence(regimes: dict[str, Any]) -> str:
    states = regimes["states"]
    names = list(states)
    parts = [
        f"{name} {s['volatility']:.1%} over {s['days']} days" if s["days"] else f"{name} never served"
        for name, s in states.items()
    ]
    compared, ordered = regimes["years_compared"], regimes["years_turbulent_above_calm"]
    verdict = (
        "in every compared year"
        if regimes["turbulent_above_calm_every_year"]
        else f"in {ordered} of {compared} compared years"
    )
    return (
        f"Out of sample (each test year labelled by the refit trained before it, as served), realised volatility of "
        f"the next day's return: {'; '.join(parts)}. The {names[-1]} regime's exceeds the {names[0]} one's {verdict} "
        f"({regimes['years'] - compared} of {regimes['years']} years not compared: a regime served on fewer than "
        f"{regimes['min_days_compared']} days)."
    )


def _regime_year_plot(regimes: dict[str, Any], data: str) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(6, 3.2))
    years = [entry["year"] for entry in regimes["by_year"]]
    names = list(regimes["states"])
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [entry["states"][name].get("volatility", np.nan) for entry in regimes["by_year"]]
        axis.bar(np.arange(len(years)) + (i - (len(names) - 1) / 2) * width, values, width, label=name)
    axis.set_xticks(np.arange(len(years)), [str(y) for y in years], fontsize=7)
    axis.set_ylabel("annualised volatility, next day")
    axis.set_title(f"realised volatility by served regime, out of sample ({data})", fontsize=9)
    axis.legend(fontsize=7)
    return figure


def _ic_plot(periods: pd.DataFrame, ic: dict[str, Any], data: str) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(6, 3.2))
    values = periods["rank"].dropna()
    positions = np.arange(values.size)
    axis.bar(positions, values.to_numpy(), color=np.where(values.to_numpy() >= 0, "#4c9a4c", "#c0504d"), width=0.9)
    axis.axhline(ic["rank"]["mean"], color="black", lw=1, label=f"mean {ic['rank']['mean']:.3f}")
    axis.axhspan(ic["rank"]["ci_low"], ic["rank"]["ci_high"], color="grey", alpha=0.25, label="95 % interval")
    step = max(1, values.size // 8)
    axis.set_xticks(positions[::step], [str(v)[:10] for v in values.index[::step]], rotation=30, fontsize=7)
    axis.set_title(f"rank IC per {ic['period']} ({data})", fontsize=9)
    axis.legend(fontsize=7)
    return figure


def _quantile_plot(quantiles: dict[str, Any], horizon: int, data: str) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(6, 3.2))
    means = 1e4 * np.asarray(quantiles["mean_realised"], dtype=float)
    axis.bar(np.arange(1, means.size + 1), means, color="#4a7ab5")
    axis.set_xlabel("prediction quantile (1 = lowest)")
    axis.set_ylabel(f"mean realised {horizon}-day log return (bp)")
    axis.set_title(f"quantile returns, top − bottom {1e4 * quantiles['spread']:.1f} bp ({data})", fontsize=9)
    return figure


def _equity_plot(strategies: dict[str, Returns], costs_bp: list[float], data: str, title: str) -> plt.Figure:
    cost = costs_bp[0]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6, 4.2), sharex=True, height_ratios=[3, 1.3])
    for name, path in strategies.items():
        wealth = (1 + path.net(cost)).cumprod()
        dates = pd.to_datetime(wealth.index)
        top.plot(dates, wealth.to_numpy(), lw=1, label=name)
        bottom.plot(dates, (wealth / wealth.cummax() - 1).to_numpy(), lw=0.8)
    top.set_ylabel("wealth (start 1)")
    bottom.set_ylabel("drawdown")
    top.set_title(f"{title}, {cost:g} bp a side ({data})", fontsize=9)
    top.legend(fontsize=7)
    return figure


def _reliability_plot(calibration: dict[str, Any], data: str) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(6, 3.2))
    bins = [b for b in calibration["bins"] if b["count"]]
    predicted = [b["mean_probability"] for b in bins]
    axis.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect calibration")
    axis.plot(predicted, [b["observed_rate"] for b in bins], marker="o", label="model")
    for b in bins:
        axis.annotate(str(b["count"]), (b["mean_probability"], b["observed_rate"]), fontsize=6)
    axis.axhline(calibration["base_rate"], color="#c0504d", lw=0.8, label=f"base rate {calibration['base_rate']:.3f}")
    axis.set_xlabel("predicted P(up) (bin mean; labels: rows)")
    axis.set_ylabel("observed up rate")
    axis.set_title(
        f"reliability, Brier {calibration['brier']:.4f} vs base rate {calibration['brier_base_rate']:.4f} ({data})",
        fontsize=9,
    )
    axis.legend(fontsize=7)
    return figure
