"""Batch inference: the service's answers for every (symbol, date) of a file, whatever the chunking or format."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from bentos.batch import CARRY_BARS, BatchModels, RegimeFilter, app, score_file
from bentos.inputs import REGIME_CONTEXT_ROWS
from bentos.schemas import BarWindow
from features import DEFAULT_SPEC, OHLCVValidationError
from tests.conftest import as_panel, make_bars

LOOKBACK = DEFAULT_SPEC.lookback
FLAT_FROM, FLAT_TO = 400, 440  # 41 bars at one price: rv_21 is 0 there, so those regime observations are dropped


@pytest.fixture(scope="module")
def panel(embedded_bars: pd.DataFrame) -> pd.DataFrame:
    """The two real indices, a symbol with a flat stretch and one too short to score, grouped by symbol."""
    flat = make_bars(900, seed=3)
    flat.loc[FLAT_FROM:FLAT_TO, ["open", "high", "low", "close"]] = 100.0
    synthetic = as_panel(("FLAT", flat), ("SHORT", make_bars(LOOKBACK, seed=4)))
    return pd.concat([embedded_bars, synthetic], ignore_index=True)[["symbol", "date", *synthetic.columns[2:]]]


@pytest.fixture(scope="module")
def parquet_file(panel: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("batch") / "bars.parquet"
    panel.to_parquet(path, index=False, row_group_size=3000)
    return path


@pytest.fixture(scope="module")
def models(production_models: dict[str, str]) -> BatchModels:
    return BatchModels.load(production_models)


@pytest.fixture(scope="module")
def scored(parquet_file: Path, models: BatchModels) -> pd.DataFrame:
    output = parquet_file.with_name("scored.parquet")
    summary = score_file(parquet_file, output, models=models)
    assert summary.rows_read == len(pd.read_parquet(parquet_file))
    assert summary.rows_scored == len(pd.read_parquet(output)) and summary.symbols == 4
    return pd.read_parquet(output)


@pytest.fixture(scope="module")
def service(production_models: dict[str, str]) -> Any:
    return importlib.import_module("bentos.service").MarketModels()


def window_ending(bars: pd.DataFrame, position: int) -> BarWindow:
    """The bars the service needs for the same context as the batch: lookback + regime context, or all before."""
    rows = bars.iloc[max(0, position - CARRY_BARS) : position + 1]
    values = {c: rows[c].astype(float).tolist() for c in ("open", "high", "low", "close", "volume")}
    return BarWindow(date=[str(d.date()) for d in rows["date"]], **values)


def test_batch_rows_equal_the_service_answers_for_the_same_windows(
    panel: pd.DataFrame, scored: pd.DataFrame, service: Any
) -> None:
    positions = {
        "^GSPC": [LOOKBACK, LOOKBACK + 1, LOOKBACK + 248, LOOKBACK + 249, LOOKBACK + 250, 2718, 5030],
        "^IXIC": [LOOKBACK, 1000, 4321],
        # around the flat stretch: incomplete rows inside the context, then as its first row
        "FLAT": [FLAT_TO - 5, FLAT_TO + 10, FLAT_TO + REGIME_CONTEXT_ROWS - 25, *range(669, 692, 4), 899],
    }
    for symbol, chosen in positions.items():
        bars = panel[panel["symbol"] == symbol].reset_index(drop=True)
        rows = scored[scored["symbol"] == symbol].set_index("date")
        for position in chosen:
            answer = service.predict_all(bars=window_ending(bars, position))
            row = rows.loc[bars["date"].iloc[position].date()]
            where = f"{symbol} at position {position}"
            assert answer.as_of == str(bars["date"].iloc[position].date())
            assert row["expected_log_return_lightgbm"] == answer.return_lightgbm.expected_log_return, where
            assert row["expected_log_return_random_forest"] == pytest.approx(
                answer.return_random_forest.expected_log_return, rel=0, abs=1e-12
            ), where
            assert row["probability_up"] == answer.direction.probability_up, where
            assert row["direction"] == answer.direction.direction, where
            assert row["annualized_volatility"] == answer.volatility.annualized_volatility, where
            assert row["regime"] == answer.regime.regime, where
            for name, probability in answer.regime.probabilities.items():
                assert row[f"regime_probability_{name}"] == pytest.approx(probability, rel=0, abs=1e-9), where


def test_regime_filter_equals_the_hmm_posterior_of_every_context_window(
    panel: pd.DataFrame, scored: pd.DataFrame, models: BatchModels
) -> None:
    regime = models.regime
    names = list(DEFAULT_SPEC.names)
    bars = panel[panel["symbol"] == "^IXIC"].reset_index(drop=True)
    features = DEFAULT_SPEC.frame(bars.drop(columns="symbol")).to_numpy()
    probabilities = scored[scored["symbol"] == "^IXIC"][[f"regime_probability_{n}" for n in regime.names]].to_numpy()
    for position in range(LOOKBACK, len(bars), 7):
        context = features[max(LOOKBACK, position - REGIME_CONTEXT_ROWS + 1) : position + 1]
        expected = regime.model.posterior_last(regime.model.observations(context, names))
        np.testing.assert_allclose(probabilities[position - LOOKBACK], expected, rtol=0, atol=1e-9)


def test_regime_filter_without_any_complete_context_row_is_unknown(models: BatchModels) -> None:
    regime = RegimeFilter(models.regime.model)
    observations = np.full((REGIME_CONTEXT_ROWS, 2), -np.inf)
    valid = np.zeros(REGIME_CONTEXT_ROWS, dtype=bool)
    segment = (LOOKBACK, regime.emissions(observations, valid), valid, 3)
    assert np.isnan(regime.posteriors([segment])).all()


def test_only_rows_with_enough_history_are_scored_and_in_file_order(panel: pd.DataFrame, scored: pd.DataFrame) -> None:
    expected = panel.groupby("symbol", sort=False).apply(lambda g: g.iloc[LOOKBACK:], include_groups=False)
    assert "SHORT" not in set(scored["symbol"])  # min_bars - 1 bars: never enough
    assert scored["symbol"].tolist() == expected.index.get_level_values(0).tolist()
    assert scored["date"].tolist() == [d.date() for d in expected["date"]]
    assert scored.drop(columns="regime").notna().all().all() and scored["regime"].notna().all()
    assert set(scored["direction"]) <= {"up", "down"}
    assert np.allclose(scored.filter(like="regime_probability_").sum(axis=1), 1.0)


def test_output_metadata_names_the_models_and_the_feature_spec(
    scored: pd.DataFrame, parquet_file: Path, production_models: dict[str, str]
) -> None:
    metadata = json.loads(pq.read_schema(parquet_file.with_name("scored.parquet")).metadata[b"mlops_finance"])
    assert metadata["feature_spec"] == DEFAULT_SPEC.version_hash
    assert metadata["models"] == {k: v for k, v in production_models.items() if k != "price_prophet"}


@pytest.mark.parametrize("chunk_rows", [500, 2999])
def test_chunk_size_does_not_change_the_output(
    parquet_file: Path, scored: pd.DataFrame, models: BatchModels, tmp_path: Path, chunk_rows: int
) -> None:
    summary = score_file(parquet_file, tmp_path / "out.parquet", models=models, chunk_rows=chunk_rows)
    assert summary.chunks == -(-summary.rows_read // chunk_rows)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet"), scored, check_exact=True)


def test_csv_and_parquet_give_identical_output(
    panel: pd.DataFrame, scored: pd.DataFrame, models: BatchModels, tmp_path: Path
) -> None:
    source = tmp_path / "bars.csv"
    panel.assign(date=panel["date"].dt.strftime("%Y-%m-%d")).to_csv(source, index=False)
    score_file(source, tmp_path / "out.parquet", models=models, chunk_rows=1234)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet"), scored, check_exact=True)


def test_a_later_bar_never_changes_an_earlier_answer(
    panel: pd.DataFrame, scored: pd.DataFrame, models: BatchModels, tmp_path: Path
) -> None:
    cut = panel[panel["symbol"] == "^GSPC"].iloc[: LOOKBACK + 700].copy()
    cut.loc[cut.index[-1], ["open", "high", "low", "close"]] *= 3.0  # a shock on the last bar only
    cut.to_parquet(tmp_path / "cut.parquet", index=False)
    score_file(tmp_path / "cut.parquet", tmp_path / "out.parquet", models=models, chunk_rows=256)
    earlier = pd.read_parquet(tmp_path / "out.parquet").iloc[:-1]
    pd.testing.assert_frame_equal(earlier, scored.iloc[: len(earlier)], check_exact=True)


def bad(panel: pd.DataFrame, case: str) -> pd.DataFrame:
    frame = panel.copy()
    if case == "negative price":
        frame.loc[2500, "low"] = -1.0
    elif case == "unsorted dates":
        frame.loc[[2999, 3000], "date"] = frame.loc[[3000, 2999], "date"].to_numpy()
    elif case == "duplicate date":
        frame.loc[3000, "date"] = frame.loc[2999, "date"]
    elif case == "symbol not grouped":
        frame = pd.concat([frame.iloc[:3000], frame.iloc[6000:6100], frame.iloc[3000:3100]], ignore_index=True)
    return frame


REGROUPED = (
    "row 3100, symbol ^GSPC, date 2010-12-06: symbol ^GSPC appears again after other symbols "
    "(its earlier rows end at row 2999)"
)


@pytest.mark.parametrize(
    ("case", "chunk_rows", "expected"),
    [
        ("negative price", 1000, "row 2500, symbol ^GSPC, date 2008-12-10: low=-1.0 must be > 0 [price_not_positive]"),
        ("unsorted dates", 1000, "row 3000, symbol ^GSPC, date 2010-12-03: date 2010-12-03 comes after 2010-12-06 "),
        ("unsorted dates", 3000, "(row 2999); dates must increase [date_unsorted]"),  # across a chunk boundary
        (
            "duplicate date",
            3000,
            "row 3000, symbol ^GSPC, date 2010-12-03: date 2010-12-03 repeats the date of row 2999",
        ),
        ("symbol not grouped", 2000, REGROUPED),
        ("symbol not grouped", 3100, REGROUPED),  # the chunk starts with a symbol closed in the chunk before
    ],
)
def test_bad_input_raises_naming_the_row_and_writes_nothing(
    panel: pd.DataFrame, models: BatchModels, tmp_path: Path, case: str, chunk_rows: int, expected: str
) -> None:
    source, output = tmp_path / "bad.parquet", tmp_path / "out.parquet"
    bad(panel, case).to_parquet(source, index=False)
    with pytest.raises(OHLCVValidationError) as caught:
        score_file(source, output, models=models, chunk_rows=chunk_rows)
    assert expected in str(caught.value)
    assert not output.exists() and list(tmp_path.iterdir()) == [source]


def test_missing_column_and_unknown_format(panel: pd.DataFrame, models: BatchModels, tmp_path: Path) -> None:
    panel.drop(columns="volume").to_csv(tmp_path / "bars.csv", index=False)
    with pytest.raises(OHLCVValidationError, match="column 'volume' is missing"):
        score_file(tmp_path / "bars.csv", tmp_path / "out.parquet", models=models)
    (tmp_path / "bars.xlsx").write_text("")
    with pytest.raises(ValueError, match=r"unknown file type '\.xlsx'"):
        score_file(tmp_path / "bars.xlsx", tmp_path / "out.parquet", models=models)


def test_command_line_scores_with_the_production_manifest_and_reports_bad_rows(
    parquet_file: Path, panel: pd.DataFrame, scored: pd.DataFrame, tmp_path: Path
) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["score", str(parquet_file), str(tmp_path / "out.parquet"), "--chunk-rows", "4000"])
    assert result.exit_code == 0, result.output
    assert f"{len(scored):,} of {len(panel):,} rows scored" in result.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet"), scored, check_exact=True)
    bad(panel, "negative price").to_csv(tmp_path / "bad.csv", index=False)
    result = runner.invoke(app, ["score", str(tmp_path / "bad.csv"), str(tmp_path / "bad.parquet")])
    assert result.exit_code == 1 and "row 2500" in result.output and "price_not_positive" in result.output


def test_scoring_with_the_models_of_a_built_bento(
    parquet_file: Path, scored: pd.DataFrame, production_models: dict[str, str], tmp_path: Path
) -> None:
    from deploy.bento import build, build_context

    (tmp_path / "context").mkdir()
    tag = build(production_models, build_context(tmp_path / "context"))
    summary = score_file(parquet_file, tmp_path / "out.parquet", bento=tag)
    assert summary.models == {k: v for k, v in production_models.items() if k != "price_prophet"}
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet"), scored, check_exact=True)


def test_features_beyond_what_the_models_take_are_named_as_the_service_names_them(
    models: BatchModels, service: Any, tmp_path: Path
) -> None:
    """Prices no market quotes (1e-300 next to 1e300) give features the models cannot take: the service answers 422
    naming the window; batch inference names the row, symbol and date, with the service's words (not an unnamed
    error from inside a model)."""
    bars = make_bars(LOOKBACK + 300, seed=6)
    first_extreme = LOOKBACK + 100
    for row in range(first_extreme, len(bars)):
        bars.loc[row, ["open", "high", "low", "close"]] = 1e-300 if row % 2 else 1e300
    as_panel(("EXTREME", bars)).to_parquet(tmp_path / "extreme.parquet", index=False)
    with pytest.raises(OHLCVValidationError) as caught:
        score_file(tmp_path / "extreme.parquet", tmp_path / "out.parquet", models=models)
    first = caught.value.violations[0]
    assert (first.rule, first.symbol, first.row) == ("features_out_of_range", "EXTREME", first_extreme)
    assert first.date == str(bars["date"].iloc[first_extreme].date())
    with pytest.raises(Exception, match="beyond what the models take") as answered:
        service.predict_all(bars=window_ending(bars, first_extreme))
    assert str(answered.value) == f"window ending {first.date}: {first.message}"
    assert not (tmp_path / "out.parquet").exists()
