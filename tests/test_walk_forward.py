"""Walk-forward splits: expanding, yearly, and purged so that no training label reaches into the test period."""

from __future__ import annotations

import numpy as np
import pytest

from training.dataset import Panel
from training.evaluation.splits import walk_forward_splits, yearly_test_periods


def test_yearly_periods_are_the_last_calendar_years(quick_panel: Panel) -> None:
    periods = yearly_test_periods(quick_panel.dates, 2)
    assert [(str(a), str(b)) for a, b in periods] == [("2017-01-01", "2018-01-01"), ("2018-01-01", "2019-01-01")]
    with pytest.raises(ValueError, match="need more than"):
        yearly_test_periods(quick_panel.dates, 50)


@pytest.mark.parametrize("horizon", [1, 5])
def test_no_training_target_overlaps_its_test_period(quick_panel: Panel, horizon: int) -> None:
    panel = quick_panel
    ends = panel.target_end[horizon]
    splits = walk_forward_splits(panel.dates, ends, yearly_test_periods(panel.dates, 2))
    for split in splits:
        assert (ends[split.train] < split.test_start).all()
        assert (panel.dates[split.train] < split.test_start).all()
        assert ((panel.dates[split.test] >= split.test_start) & (panel.dates[split.test] < split.test_end)).all()
        assert np.intersect1d(split.train, split.test).size == 0
        # purging drops exactly the last `horizon` bars before the test year, per symbol
        before = (panel.dates < split.test_start) & ~np.isnat(ends)
        purged = np.flatnonzero(before & ~np.isin(np.arange(len(panel)), split.train))
        for symbol in np.unique(panel.symbols):
            assert (panel.symbols[purged] == symbol).sum() == horizon
    # expanding window: every fold trains on a superset of the one before
    assert set(splits[0].train) < set(splits[1].train)


def test_targets_line_up_with_the_bars(quick_panel: Panel) -> None:
    panel = quick_panel
    row = 100
    symbol = panel.symbols[row]
    bars = panel.bars[symbol]
    position = panel.positions[row]
    close = bars["close"].to_numpy()
    assert panel.close[row] == close[position]
    assert panel.forward_return[row] == pytest.approx(np.log(close[position + 5] / close[position]))
    assert panel.target_end[5][row] == bars["date"].to_numpy(dtype="datetime64[D]")[position + 5]
