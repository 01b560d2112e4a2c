"""price_prophet: anchored forecasts, the prediction frame, the store round trip and the walk-forward evaluation.

Runs on the real embedded bars from 2014 (two symbols, quick config: test years 2017 and 2018, so the first fold
trains on three years).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd
import pytest

from bentos.prophet_intervals import close_variance, continued_variance
from bentos.prophet_model import (
    MANIFEST_FILE,
    Anchor,
    ProphetModels,
    UnknownSymbolError,
    anchored_forecast,
    future_trading_days,
    load_models,
)
from data.snapshots import SnapshotStore
from features.calendar import trading_calendar
from training.config import TrainingConfig
from training.dataset import Panel, build_panel
from training.evaluation.walk_forward import Evaluation
from training.models.price_prophet import PriceProphet
from training.models.prophet_evaluation import PREDICTION_COLUMNS, forecast_scores
from training.models.trainer import Fitted

SYMBOLS = ["^GSPC", "^IXIC"]

# prophet 1.5 itself calls pandas APIs that pandas 3.1 deprecates; those warnings are not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning:prophet")


@pytest.fixture(scope="module")
def config() -> TrainingConfig:
    return TrainingConfig.quick()


@pytest.fixture(scope="module")
def panel(embedded_bars: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory, config: TrainingConfig) -> Panel:
    recent = embedded_bars[embedded_bars["date"] >= pd.Timestamp("2014-01-01")]
    info, _ = SnapshotStore(tmp_path_factory.mktemp("prophet-snapshots")).write(recent, "embedded")
    return build_panel(recent, info, config.horizon, config.first_date)


@pytest.fixture(scope="module")
def trainer(config: TrainingConfig) -> PriceProphet:
    return PriceProphet(config)


@pytest.fixture(scope="module")
def evaluated(trainer: PriceProphet, panel: Panel) -> tuple[Evaluation, Fitted]:
    evaluation, fitted, _, _ = trainer.evaluate_and_fit(panel)
    return evaluation, fitted


@pytest.fixture(scope="module")
def fitted(evaluated: tuple[Evaluation, Fitted]) -> Fitted:
    return evaluated[1]


@pytest.fixture(scope="module")
def evaluation(evaluated: tuple[Evaluation, Fitted]) -> Evaluation:
    return evaluated[0]


@pytest.fixture
def model_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private BentoML model store for one test.

    BentoML resolves BENTOML_HOME once per process, on first use of the store, and another test may have used it
    already; so besides the environment the store provider itself is pointed at the temporary home, and restored.
    """
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    home = tmp_path / "bentoml"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("BENTOML_HOME", str(home))
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "true")
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    try:
        yield home
    finally:
        BentoMLContainer.model_store.reset()


def assert_basic_json(value: Any, where: str = "") -> None:
    """JSON-like basic types all the way down and no None (BentoML metadata rejects None; NaN is fine)."""
    assert value is not None, f"None at {where or 'top level'}"
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str | int), f"key {key!r} at {where}"
            assert_basic_json(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_basic_json(item, f"{where}[{i}]")
    else:
        assert type(value) in (str, int, float, bool), f"{type(value).__name__} at {where}"


def test_horizon_zero_is_the_last_close_and_the_bounds_bracket_the_price(fitted: Fitted) -> None:
    models: ProphetModels = fitted.model
    anchor = models.entries["^GSPC"].anchor
    future = future_trading_days(anchor.date, 10)
    forecast = anchored_forecast(models.model("^GSPC"), anchor.date, anchor.close, anchor.log_volume, future)

    assert list(forecast.columns) == ["date", "horizon", "price"]
    forecast = models.forecast("^GSPC", 10)
    assert list(forecast.columns) == ["date", "horizon", "price", "lower", "upper"]
    assert forecast["horizon"].tolist() == list(range(11))
    first = forecast.iloc[0]
    assert first["date"] == anchor.date
    assert first["price"] == anchor.close == first["lower"] == first["upper"]
    ahead = forecast.iloc[1:]
    assert (np.diff(ahead["upper"] / ahead["lower"]) > 0).all()  # wider the further ahead
    assert (ahead["lower"] < ahead["price"]).all()
    assert (ahead["price"] < ahead["upper"]).all()
    assert pd.DatetimeIndex(ahead["date"]).equals(future)
    # anchored: ten days ahead stays within a few percent of the last close, not at the smooth curve's level
    assert np.all(np.abs(ahead["price"].to_numpy() / anchor.close - 1.0) < 0.05)


def test_forecast_from_recent_bars_anchors_on_their_last_close(fitted: Fitted, panel: Panel) -> None:
    models: ProphetModels = fitted.model
    bars = panel.bars["^IXIC"]
    recent = bars[bars["date"] <= pd.Timestamp("2018-06-29")].tail(5)
    forecast = models.forecast("^IXIC", 5, recent=recent)
    assert forecast["price"].iloc[0] == recent["close"].iloc[-1]
    assert forecast["date"].iloc[0] == pd.Timestamp("2018-06-29")
    assert forecast["date"].iloc[1] == pd.Timestamp("2018-07-02")

    default = models.forecast("^IXIC", 5)
    assert default["price"].iloc[0] == models.entries["^IXIC"].last_close
    assert default["date"].iloc[0] == pd.Timestamp(models.entries["^IXIC"].last_date)


def test_the_prediction_frame_holds_the_anchor_and_the_future_only(
    fitted: Fitted, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fitted.model.models["^GSPC"]
    anchor: Anchor = fitted.model.entries["^GSPC"].anchor
    frames: list[pd.DataFrame] = []
    predict = model.predict

    def spy(df: pd.DataFrame | None = None, vectorized: bool = True) -> pd.DataFrame:
        assert df is not None, "predict without a frame predicts the whole history"
        frames.append(df.copy())
        return predict(df, vectorized)

    monkeypatch.setattr(model, "predict", spy)
    future = future_trading_days(anchor.date, 7)
    forecast = anchored_forecast(model, anchor.date, anchor.close, anchor.log_volume, future)

    assert len(frames) == 1
    assert len(frames[0]) == len(future) + 1 == len(forecast)
    assert frames[0]["ds"].min() == anchor.date
    assert (frames[0]["log_volume"] == anchor.log_volume).all()


def test_a_forecast_is_for_the_exchanges_sessions_only(fitted: Fitted) -> None:
    """Business days would include Christmas Day and New Year's Day, when NYSE is closed (the service did so)."""
    models: ProphetModels = fitted.model
    friday = Anchor(pd.Timestamp("2018-12-21"), 2416.62, 15.0)
    five = pd.DatetimeIndex(models.forecast("^GSPC", 5, recent=friday)["date"])
    assert [str(d.date()) for d in five] == [
        "2018-12-21",  # the anchor
        "2018-12-24",
        "2018-12-26",  # not 25 December
        "2018-12-27",
        "2018-12-28",
        "2018-12-31",
    ]
    six = pd.DatetimeIndex(models.forecast("^GSPC", 6, recent=friday)["date"])
    assert str(six[-1].date()) == "2019-01-02"  # not 1 January
    for symbol in SYMBOLS:  # the report's fan, from the last bar (2018-12-31)
        fan = fitted.report["fan"][symbol]["dates"]
        assert fan[1] == "2019-01-02"
        assert trading_calendar("XNYS").is_session(np.array(fan[1:], dtype="datetime64[D]")).all()


def test_the_manifest_records_each_symbols_calendar(fitted: Fitted, tmp_path: Path) -> None:
    models: ProphetModels = fitted.model
    assert {e.calendar for e in models.entries.values()} == {"XNYS"}
    models.save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert {e["calendar"] for e in manifest["symbols"].values()} == {"XNYS"}
    for entry in manifest["symbols"].values():  # a manifest written before calendars were recorded
        del entry["calendar"]
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert {e.calendar for e in load_models(tmp_path).entries.values()} == {"XNYS"}


def test_forecasts_are_reproducible_and_leave_the_global_random_state_alone(fitted: Fitted) -> None:
    models: ProphetModels = fitted.model
    np.random.seed(123)  # noqa: NPY002
    expected_next = np.random.random()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    first = models.forecast("^GSPC", 5)
    assert np.random.random() == expected_next  # noqa: NPY002
    pd.testing.assert_frame_equal(first, models.forecast("^GSPC", 5))


def test_store_round_trip_gives_identical_forecasts(trainer: PriceProphet, fitted: Fitted, model_store: Path) -> None:
    assert_basic_json(fitted.hyperparameters, "hyperparameters")
    assert_basic_json(fitted.extra, "extra")
    metadata = {"hyperparameters": fitted.hyperparameters, "symbols": fitted.extra["symbols"]}
    saved = trainer.save(fitted, metadata=metadata, labels={"stage": "candidate"})

    stored = bentoml.models.get(saved.tag)
    assert Path(stored.path).is_relative_to(model_store)
    stored_metadata: dict[str, Any] = dict(stored.info.metadata)
    assert stored_metadata["hyperparameters"] == fitted.hyperparameters
    manifest = json.loads(Path(stored.path_of(MANIFEST_FILE)).read_text())
    assert sorted(manifest["symbols"]) == SYMBOLS
    assert {e["file"] for e in manifest["symbols"].values()} == {"prophet_0.json", "prophet_1.json"}

    loaded = load_models(stored.path)
    assert loaded.symbols == SYMBOLS
    assert loaded.entries == fitted.model.entries
    for symbol in SYMBOLS:
        pd.testing.assert_frame_equal(loaded.forecast(symbol, 10), fitted.model.forecast(symbol, 10), check_exact=True)


def test_fit_describes_the_models_and_the_fan(fitted: Fitted, config: TrainingConfig) -> None:
    assert "fan" not in fitted.extra and "fit_seconds" not in fitted.extra  # the report's, never the card's
    assert fitted.extra["symbols"] == SYMBOLS
    assert fitted.hyperparameters["uncertainty_samples"] == 0  # the intervals are conformal, not sampled
    assert fitted.extra["intervals"] == fitted.model.intervals.card()
    for symbol in SYMBOLS:
        anchor = fitted.extra["anchors"][symbol]
        assert anchor["last_date"] == anchor["train_end"] == "2018-12-31"
        fan = fitted.report["fan"][symbol]
        assert len(fan["dates"]) == len(fan["price"]) == config.prophet_forecast_days + 1
        assert fan["price"][0] == anchor["last_close"] == fan["history_close"][-1]
        assert len(fan["history_dates"]) == len(fan["history_close"]) == 250
        assert all(lo <= p <= hi for lo, p, hi in zip(fan["lower"], fan["price"], fan["upper"], strict=True))


def test_unknown_symbol_raises_listing_the_known_ones(fitted: Fitted) -> None:
    with pytest.raises(UnknownSymbolError, match=r"'AAPL'.*\^GSPC, \^IXIC") as raised:
        fitted.model.forecast("AAPL", 5)
    assert raised.value.symbol == "AAPL"
    assert raised.value.known == SYMBOLS
    assert isinstance(raised.value, LookupError)


@pytest.mark.parametrize("periods", [0, -3, 10_000])
def test_bad_periods_are_rejected(fitted: Fitted, periods: int) -> None:
    with pytest.raises(ValueError, match="periods"):
        fitted.model.forecast("^GSPC", periods)


def test_future_dates_must_follow_the_anchor(fitted: Fitted) -> None:
    model = fitted.model.models["^GSPC"]
    anchor = fitted.model.entries["^GSPC"].anchor
    with pytest.raises(ValueError, match="after the last date"):
        anchored_forecast(model, anchor.date, anchor.close, anchor.log_volume, [anchor.date])


def test_evaluate_reports_mape_per_horizon_against_the_random_walk(
    evaluation: Evaluation, config: TrainingConfig
) -> None:
    days = config.prophet_forecast_days
    by_horizon = evaluation.extras["mape_by_horizon"]
    assert sorted(by_horizon["model"]) == sorted(by_horizon["random_walk"]) == list(range(1, days + 1))
    for h in range(1, days + 1):
        model, walk = by_horizon["model"][h], by_horizon["random_walk"][h]
        assert math.isfinite(model) and walk > 0
        # anchored Prophet is about as good as the random walk (FACTS.md); far worse means the anchor is broken
        assert model < 3 * walk, f"horizon {h}: model MAPE {model:.2f}% vs random walk {walk:.2f}%"

    assert set(evaluation.metrics) == {"mape", "mape_h1", "mape_h5", f"mape_h{days}", "coverage", "n"}
    assert set(evaluation.baselines["random_walk"]) == set(evaluation.metrics) - {"coverage"}
    assert 0.0 < evaluation.metrics["coverage"] <= 1.0
    assert evaluation.metrics["n"] == len(evaluation.predictions)
    assert evaluation.primary_metric == "mape" and not evaluation.higher_is_better


def test_evaluate_predictions_are_walk_forward_and_out_of_sample(
    evaluation: Evaluation, panel: Panel, config: TrainingConfig
) -> None:
    predictions = evaluation.predictions
    assert list(predictions.columns) == list(PREDICTION_COLUMNS)
    assert set(predictions["symbol"]) == set(SYMBOLS)
    assert (predictions["target_date"] > predictions["date"]).all()
    assert predictions["horizon"].between(1, config.prophet_forecast_days).all()
    assert [f["test_start"] for f in evaluation.folds] == ["2017-01-01", "2018-01-01"]
    for fold in evaluation.folds:
        assert fold["train_end"] < fold["test_start"]
        rows = predictions[predictions["fold"] == fold["fold"]]
        assert fold["n_test"] == len(rows)
        assert (rows["date"] >= pd.Timestamp(fold["test_start"])).all()
        assert set(fold["baselines"]) == {"random_walk"}

    for symbol in SYMBOLS:
        bars = panel.bars[symbol].set_index("date")
        rows = predictions[predictions["symbol"] == symbol]
        # actuals are the symbol's closes on the target dates; the random walk is the origin's close
        np.testing.assert_array_equal(rows["actual"].to_numpy(), bars.loc[rows["target_date"], "close"].to_numpy())
        np.testing.assert_array_equal(
            rows["baseline_random_walk"].to_numpy(), bars.loc[rows["date"], "close"].to_numpy()
        )
        # horizon h is the h-th bar after the origin (trading days, not calendar days)
        position = {d: i for i, d in enumerate(bars.index)}
        steps = [position[t] - position[d] for d, t in zip(rows["date"], rows["target_date"], strict=True)]
        assert steps == rows["horizon"].tolist()
        for _, fold_rows in rows.groupby("fold"):
            origins = sorted({position[d] for d in fold_rows["date"]})
            assert set(np.diff(origins).tolist()) == {config.prophet_origin_step}


def test_each_test_year_is_calibrated_on_the_years_before_it_only(evaluation: Evaluation, fitted: Fitted) -> None:
    assert evaluation.extras["calibration_year"] == "2016"  # forecast to calibrate 2017's intervals, scored nowhere
    calibrated = [fold["intervals_calibrated_on"] for fold in evaluation.folds]
    first_year = calibrated[0]
    scored_2017 = int(np.isfinite(forecast_scores(evaluation.predictions[evaluation.predictions["fold"] == 0])).sum())
    assert first_year >= 50 and calibrated[1] == first_year + scored_2017  # 2018's: 2016 and 2017, never 2018
    predictions = evaluation.predictions
    assert (predictions["lower"] <= predictions["prediction"]).all()
    assert (predictions["prediction"] <= predictions["upper"]).all()
    # the served intervals: every year's forecasts
    assert fitted.model.intervals.scores == calibrated[1] + int(
        np.isfinite(forecast_scores(predictions[predictions["fold"] == 1])).sum()
    )
    assert evaluation.extras["intervals"] == fitted.model.intervals.card()
    assert set(evaluation.extras["coverage_by_horizon"]) == set(range(1, 11))
    card_coverage = fitted.extra["interval_coverage_by_horizon"]  # per horizon on the card
    assert card_coverage == {str(h): v for h, v in evaluation.extras["coverage_by_horizon"].items()}


def test_recent_bars_set_the_intervals_volatility(fitted: Fitted, panel: Panel) -> None:
    models: ProphetModels = fitted.model
    bars = panel.bars["^GSPC"]
    entry = models.entries["^GSPC"]
    assert entry.last_variance == pytest.approx(close_variance(bars["close"].to_numpy())[-1])
    long = bars[bars["date"] <= pd.Timestamp("2018-06-29")].tail(60)  # enough returns for their own variance
    assert models.anchor("^GSPC", long).variance == pytest.approx(close_variance(long["close"].to_numpy())[-1])
    later = pd.DataFrame(
        {"date": pd.to_datetime(["2019-01-02", "2019-01-03"]), "close": [2600.0, 2500.0], "volume": [1e9, 1e9]}
    )
    carried = models.anchor("^GSPC", later).variance  # the training's last variance through the new returns
    assert carried == pytest.approx(continued_variance(entry.last_variance, entry.last_close, later["close"]))
    calm, wild = models.forecast("^GSPC", 5), models.forecast("^GSPC", 5, recent=later)
    assert (wild["upper"] / wild["lower"]).iloc[-1] > (calm["upper"] / calm["lower"]).iloc[-1]  # a 4 % fall widens
