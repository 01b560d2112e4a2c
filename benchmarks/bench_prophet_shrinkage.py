"""Would shrinking Prophet's anchored forecast towards the random walk help? (issue 15)

The shrunk forecast is ``last_close x (prophet / last_close) ** w``: w = 1 is the shipped forecast, w = 0 the random
walk. Measured on the same walk-forward forecasts as the card (the indices 1999-2018, 7 test years): the MAPE for a
grid of fixed weights, and the honest version, each test year shrunk by the weight that had the lowest MAPE over the
test years before it (the first test year has none before it and keeps w = 1).

Run: ``.venv/bin/python benchmarks/bench_prophet_shrinkage.py`` (about 3 minutes). Embedded data.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import Figure, write_results
from data.snapshots import SnapshotStore
from data.sources import EmbeddedSource
from training.config import TrainingConfig
from training.dataset import build_panel
from training.models.price_prophet import PriceProphet

WEIGHTS = np.round(np.linspace(0.0, 1.0, 11), 2)


def shrunk(frame: pd.DataFrame, weight: float) -> np.ndarray:
    walk = frame["baseline_random_walk"].to_numpy(float)
    return walk * (frame["prediction"].to_numpy(float) / walk) ** weight


def mape(frame: pd.DataFrame, forecast: np.ndarray) -> float:
    actual = frame["actual"].to_numpy(float)
    return float(100 * np.mean(np.abs(forecast / actual - 1)))


def main() -> None:
    bars = EmbeddedSource().fetch()
    info, _ = SnapshotStore(Path(tempfile.mkdtemp(prefix="mlops-bench-shrink-"))).write(bars, "embedded")
    config = TrainingConfig()
    frame = PriceProphet(config).evaluate(build_panel(bars, info, config.horizon, config.first_date)).predictions
    frame = frame.dropna(subset=["actual", "prediction", "baseline_random_walk"]).reset_index(drop=True)
    grid = {float(w): mape(frame, shrunk(frame, w)) for w in WEIGHTS}
    years = frame["date"].dt.year.to_numpy()
    chosen, forecast = {}, np.empty(len(frame))
    for year in np.unique(years):
        before, mine = frame[years < year], years == year
        weight = 1.0 if before.empty else min(WEIGHTS, key=lambda w: mape(before, shrunk(before, w)))
        chosen[int(year)] = float(weight)
        forecast[mine] = shrunk(frame[mine], weight)
    figures = [
        Figure("MAPE, shipped forecast (w = 1)", f"{grid[1.0]:.3f} %", round(grid[1.0], 3), "%", "-", "mape_prophet"),
        Figure("MAPE, random walk (w = 0)", f"{grid[0.0]:.3f} %", round(grid[0.0], 3), "%", "-", "mape_random_walk"),
        Figure(
            "MAPE by fixed weight",
            ", ".join(f"w {w:g}: {m:.3f} %" for w, m in grid.items()),
            round(min(grid.values()), 3),
            "%",
        ),
        Figure(
            "MAPE, each test year shrunk by the weight best on the years before it",
            f"{mape(frame, forecast):.3f} % (weights by year: "
            + ", ".join(f"{y}: {w:g}" for y, w in chosen.items())
            + ")",
            round(mape(frame, forecast), 3),
            "%",
            "-",
            "mape_walk_forward_shrunk",
        ),
    ]
    notes = (
        f"{len(frame):,} forecasts (horizons 1-{config.prophet_forecast_days} days) of both indices. A weight chosen "
        "on earlier years is what a shipped shrinkage could use; a weight of 0 everywhere would ship the random walk "
        "under Prophet's name."
    )
    path = write_results("prophet_shrinkage", ".venv/bin/python benchmarks/bench_prophet_shrinkage.py", figures, notes)
    print(path.read_text())


if __name__ == "__main__":
    main()
