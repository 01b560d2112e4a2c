"""The regime model out of sample and the choice of its number of states (issue 15): known answers on a hand-made
example, the labels are those the yearly refits served, and a short single series keeps fewer states."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.snapshots import SnapshotInfo
from training.config import TrainingConfig
from training.dataset import Panel, build_panel
from training.evaluation.backtest import TRADING_DAYS
from training.evaluation.regimes import LABEL_COLUMN, MIN_DAYS, RETURN_COLUMN, regime_outcomes
from training.evaluation.splits import yearly_test_periods
from training.flows.gate_quant import QuantRules, check_regime_order, quant_checks
from training.models.regime_fit import RegimeData, fit_hmm
from training.models.regime_hmm import RegimeHMM
from training.models.regime_labels import ServedLabels

#: A short single series: the S&P 500 from 2012, four test years (3 states agree ~0.70 there, 2 states ~0.98).
SHORT = TrainingConfig(test_years=4, first_date="2012-01-01")
NAMES = ("calm", "normal", "turbulent")


def frame(years: dict[int, list[tuple[int, float]]]) -> pd.DataFrame:
    """Predictions of one symbol: per year, (served label, next-day return) per business day."""
    rows = []
    for year, days in years.items():
        dates = pd.bdate_range(f"{year}-01-02", periods=len(days))
        rows += [(d, label, r) for d, (label, r) in zip(dates, days, strict=True)]
    out = pd.DataFrame(rows, columns=["date", LABEL_COLUMN, RETURN_COLUMN])
    for name in NAMES:
        out[f"p_{name}"] = 0.0
    return out


def test_figures_per_state_and_year_are_the_hand_computed_ones() -> None:
    assert MIN_DAYS == 21  # a month of days
    calm, turbulent = [(0, 0.01), (0, -0.01)] * 11, [(2, 0.03), (2, -0.02), (2, 0.02), (2, -0.03), (2, 0.01)] * 5
    quiet = [(0, 0.001)] * 30 + [(2, 0.05)] * 20  # a year serving the turbulent state on too few days to compare
    outside = [(-1, 0.5)] * 3 + [(1, np.nan)]  # not in a test year, or no next day: never counted
    record = regime_outcomes(frame({2015: calm + turbulent + outside, 2016: quiet}))
    first = record["by_year"][0]
    assert first["year"] == 2015 and first["compared"] and first["turbulent_above_calm"]
    assert first["states"]["calm"] == {
        "days": 22,
        "mean_return": 0.0,
        "volatility": pytest.approx(np.sqrt(TRADING_DAYS * 1e-4)),
    }
    t = np.array([0.03, -0.02, 0.02, -0.03, 0.01])
    assert first["states"]["turbulent"]["mean_return"] == pytest.approx(TRADING_DAYS * t.mean())
    assert first["states"]["turbulent"]["volatility"] == pytest.approx(np.sqrt(TRADING_DAYS * np.mean(t**2)))
    assert first["states"]["normal"] == {"days": 0}
    second = record["by_year"][1]
    assert second["compared"] is False and "turbulent_above_calm" not in second
    assert record["states"]["calm"]["days"] == 52 and record["states"]["turbulent"]["days"] == 45
    assert (record["years"], record["years_compared"], record["years_turbulent_above_calm"]) == (2, 1, 1)
    assert record["turbulent_above_calm_every_year"] is True


def test_a_year_out_of_order_fails_the_every_year_figure_and_the_gate_rule() -> None:
    calm, turbulent = [(0, 0.02), (0, -0.02)] * 11, [(2, 0.001)] * MIN_DAYS
    record = regime_outcomes(frame({2015: calm + turbulent}))
    assert record["by_year"][0]["turbulent_above_calm"] is False
    assert record["turbulent_above_calm_every_year"] is False
    check = check_regime_order(record)
    assert not check.passed and "0 of 1" in check.detail
    assert quant_checks("regime_hmm", record, QuantRules()) == []  # off by default
    assert not quant_checks("regime_hmm", record, QuantRules(regime_order_required=True))[0].passed
    quiet = regime_outcomes(frame({2015: [(0, 0.01)] * 30}))
    assert not check_regime_order(quiet).passed and "cannot tell" in check_regime_order(quiet).detail
    assert not check_regime_order(None).passed


@pytest.fixture(scope="module")
def short_panel(embedded_bars: pd.DataFrame) -> Panel:
    bars = embedded_bars[embedded_bars["symbol"] == "^GSPC"].reset_index(drop=True)
    info = SnapshotInfo(
        id="gspc-test",
        source="embedded",
        symbols=["^GSPC"],
        start=str(bars["date"].min().date()),
        end=str(bars["date"].max().date()),
        rows=len(bars),
        rows_per_symbol={"^GSPC": len(bars)},
        created_at="2024-01-01T00:00:00+00:00",
        origin={},
    )
    return build_panel(bars, info, SHORT.horizon, SHORT.first_date)


def test_a_short_single_series_keeps_two_states_that_agree(short_panel: Panel) -> None:
    trainer = RegimeHMM(SHORT)
    evaluation, fitted, _, _ = trainer.evaluate_and_fit(short_panel)
    tried = evaluation.extras["state_count"]["tried"]
    assert tried["3"]["label_agreement"] < SHORT.hmm_min_agreement <= tried["2"]["label_agreement"]
    assert evaluation.metrics["n_states"] == 2 and evaluation.extras["state_count"]["chosen"] == 2
    assert evaluation.metrics["label_agreement"] == tried["2"]["label_agreement"] >= 0.95
    assert fitted.model.state_names == ("calm", "turbulent") and fitted.hyperparameters["n_states"] == 2
    assert trainer.fit(short_panel).model.n_states == 2  # the chosen count sticks
    # a count given explicitly is not revisited
    fixed = RegimeHMM(SHORT, n_states=3).evaluate(short_panel)
    assert fixed.metrics["n_states"] == 3 and list(fixed.extras["state_count"]["tried"]) == ["3"]


def test_out_of_sample_labels_are_those_the_refit_before_each_year_serves(short_panel: Panel) -> None:
    evaluation = RegimeHMM(SHORT).evaluate(short_panel)
    predictions = evaluation.predictions
    periods = yearly_test_periods(short_panel.dates, SHORT.test_years)
    dates = predictions["date"].to_numpy()
    labels = predictions[LABEL_COLUMN].to_numpy()
    in_test = np.zeros(dates.size, dtype=bool)
    data = RegimeData.from_panel(short_panel)
    served = ServedLabels(short_panel)
    for start, end in periods:
        mine = (dates >= start) & (dates < end)
        in_test |= mine
        refit = fit_hmm(
            data.sequences(start), n_states=2, restarts=SHORT.hmm_restarts, n_iter=SHORT.hmm_iterations, seed=SHORT.seed
        )
        rows = np.flatnonzero((short_panel.dates >= start) & (short_panel.dates < end))
        rows = rows[data.valid[rows]]
        assert np.array_equal(labels[mine], served.labels(refit.model, rows))
    assert (labels[~in_test] == -1).all()
    assert np.allclose(
        predictions[RETURN_COLUMN].to_numpy()[:-1],
        np.diff(np.log(short_panel.close)),
        equal_nan=True,
    )
    record = evaluation.quant
    assert record is not None and [e["year"] for e in record["by_year"]] == [2015, 2016, 2017, 2018]
    assert record["turbulent_above_calm_every_year"], record["by_year"]
