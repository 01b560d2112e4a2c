"""The pooled training panel of a snapshot: complete feature rows of every symbol with their targets.

Memory, measured on 24 symbols (114,720 rows, full settings, the last fold's fit): the panel's arrays take 344
bytes a row (30 float features are 240 of them) and its per-symbol bars 51 more, so about 400 bytes a row; one
pooled fit adds about 450 bytes per training row at its peak (LightGBM 433, the forest 485: the feature copy and the
library's own matrix). A run holds the panel in the client and, scattered, once in every worker
(``training/models/execution.py``), so on one 24 GiB machine with two workers about 10 million rows fit (three
copies of the panel plus one fit each at Dask's 80 % memory mark): some 1,600 symbols over 25 years or 2,600 over
15. Past ``TrainingConfig.max_training_rows`` (8 million) a fit trains on a seeded uniform sample of that many rows,
which bounds a fit's memory but not the panel's; beyond one machine's panel, the workers need more memory each (a
cluster by ``--scheduler``). LightGBM's own Dask training (``lightgbm.dask``) is not used: the forest has no Dask
counterpart, and every walk-forward fold would become a distributed training over a partitioned panel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client

from cluster import run_tasks
from data.snapshots import SnapshotInfo, SnapshotStore
from features import DEFAULT_SPEC, Bars, FeatureSpec, validate_ohlcv
from features.targets import forward_log_return, forward_realized_volatility, next_day_direction


@dataclass(frozen=True)
class Panel:
    """Rows are (date, symbol) pairs with a complete feature row, ordered by date then symbol.

    ``positions`` is each row's index in its symbol's bars (``bars[symbol]``), for per-symbol baselines.

    ``target_end[h]`` is the date of the bar ``h`` bars after each row (NaT beyond the data): the last date a
    target over ``h`` bars looks at, which the walk-forward splits use to purge overlapping training rows.
    """

    snapshot: SnapshotInfo
    spec: FeatureSpec
    horizon: int
    dates: np.ndarray
    symbols: np.ndarray
    features: np.ndarray
    close: np.ndarray
    positions: np.ndarray
    forward_return: np.ndarray
    direction: np.ndarray
    forward_volatility: np.ndarray
    target_end: dict[int, np.ndarray]
    bars: dict[str, pd.DataFrame] = field(repr=False)

    def __len__(self) -> int:
        return int(self.dates.shape[0])

    def forward_log_returns(self, horizon: int) -> np.ndarray:
        """Every row's ``log(close[t + horizon] / close[t])`` in its symbol's bars (NaN past the end): the return a
        position taken at the row's close earns over ``horizon`` bars (the backtests' realised return)."""
        if horizon == self.horizon:
            return self.forward_return
        out = np.full(len(self), np.nan)
        for symbol, rows in rows_by_symbol(self.symbols).items():
            out[rows] = forward_log_return(self.bars[symbol]["close"].to_numpy(float), horizon)[self.positions[rows]]
        return out

    def frame(self, rows: np.ndarray | slice | None = None) -> pd.DataFrame:
        """Features of some rows as a DataFrame (for reports and debugging)."""
        rows = slice(None) if rows is None else rows
        return pd.DataFrame(self.features[rows], columns=list(self.spec.names))


def rows_by_symbol(symbols: np.ndarray) -> dict[str, np.ndarray]:
    """Each symbol's positions in ``symbols`` (in order): one pass, where a mask per symbol would take one each."""
    return {str(k): np.asarray(v) for k, v in pd.Series(symbols).groupby(symbols, sort=False).indices.items()}


def symbol_rows(
    symbol: str, bars: pd.DataFrame | tuple[str, str], horizon: int, first_date: str | None, spec: FeatureSpec
) -> dict[str, Any]:
    """One symbol's validated bars, and its complete feature rows with their targets (a task of ``build_panel``).

    ``bars`` are the symbol's bars, or (snapshot store root, snapshot id) to read them from its partition there."""
    if not isinstance(bars, pd.DataFrame):
        root, snapshot_id = bars
        bars = SnapshotStore(Path(root)).load(snapshot_id, symbols=[symbol], verify=True)
    frame = validate_ohlcv(bars.drop(columns="symbol").reset_index(drop=True), min_bars=spec.min_bars)
    series = Bars.from_frame(frame)
    matrix = spec.compute(series)
    ends = {}
    for h in {1, horizon}:
        end = np.full(len(series), np.datetime64("NaT"), dtype="datetime64[D]")
        end[:-h] = series.dates[h:]
        ends[h] = end
    keep = np.arange(len(series)) >= spec.lookback
    if first_date is not None:
        keep &= series.dates >= np.datetime64(first_date, "D")
    return {
        "bars": frame,
        "dates": series.dates[keep],
        "symbols": np.full(int(keep.sum()), symbol, dtype=object),
        "features": matrix[keep],
        "close": series.close[keep],
        "positions": np.flatnonzero(keep),
        "forward_return": forward_log_return(series.close, horizon)[keep],
        "direction": next_day_direction(series.close)[keep],
        "forward_volatility": forward_realized_volatility(series.close, horizon)[keep],
        "ends": {h: e[keep] for h, e in ends.items()},
    }


def build_panel(
    bars: pd.DataFrame | SnapshotStore,
    snapshot: SnapshotInfo,
    horizon: int = 5,
    first_date: str | None = None,
    spec: FeatureSpec = DEFAULT_SPEC,
    client: Client | None = None,
) -> Panel:
    """Features and targets of every symbol of a snapshot's bars, pooled.

    ``first_date`` drops rows (not the bars behind their features) before that date. Each symbol's features are a
    task named by the symbol (``cluster.run_tasks``): on ``client``'s cluster, or here when it is None; the pooled
    panel is the same either way. A symbol whose bars break the OHLCV contract fails the build naming it.

    ``bars`` may be the snapshot's store instead of its bars: each task then reads its own symbol's file (verified
    against its digest), so the client never holds the whole snapshot and a cluster's task graph carries names,
    not bars (45 MB for 200 symbols x 15 years otherwise).
    """
    tasks: dict[str, tuple[Any, ...]]
    if isinstance(bars, SnapshotStore):
        where = (str(bars.root), snapshot.id)
        tasks = {symbol: (symbol, where, horizon, first_date, spec) for symbol in snapshot.symbols}
    else:
        tasks = {
            str(symbol): (str(symbol), group, horizon, first_date, spec)
            for symbol, group in bars.groupby("symbol", sort=True)
        }
    parts = list(run_tasks(client, "features", symbol_rows, tasks).values())
    per_symbol = dict(zip(tasks, (p["bars"] for p in parts), strict=True))
    dates = np.concatenate([p["dates"] for p in parts])
    symbols = np.concatenate([p["symbols"] for p in parts])
    order = np.lexsort((symbols.astype(str), dates))

    def stack(key: str) -> np.ndarray:
        return np.concatenate([p[key] for p in parts])[order]

    return Panel(
        snapshot=snapshot,
        spec=spec,
        horizon=horizon,
        dates=dates[order],
        symbols=symbols[order],
        features=stack("features"),
        close=stack("close"),
        positions=stack("positions"),
        forward_return=stack("forward_return"),
        direction=stack("direction"),
        forward_volatility=stack("forward_volatility"),
        target_end={h: np.concatenate([p["ends"][h] for p in parts])[order] for h in parts[0]["ends"]},
        bars=per_symbol,
    )
