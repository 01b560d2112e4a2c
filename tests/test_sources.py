"""Data sources: the embedded real data, a user's CSV, and yfinance with only its network replaced."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from data.pull import PullError, pull
from data.snapshots import SnapshotStore
from data.sources import CsvSource, EmbeddedSource, SourceError, YFinanceSource
from features.ohlcv import OHLCVValidationError
from tests.conftest import make_bars


def test_embedded_source_is_the_real_sp500_and_nasdaq(embedded_bars: pd.DataFrame) -> None:
    assert list(embedded_bars.columns) == ["symbol", "date", "open", "high", "low", "close", "volume"]
    sp = embedded_bars[embedded_bars["symbol"] == "^GSPC"]
    assert len(sp) == 5031
    assert str(sp["date"].iloc[0])[:10] == "1999-01-04"
    assert str(sp["date"].iloc[-1])[:10] == "2018-12-31"
    assert sp["close"].iloc[0] == pytest.approx(1228.099976)  # S&P 500 close on 4 January 1999


def test_embedded_source_rejects_unknown_symbols() -> None:
    with pytest.raises(SourceError, match="no AAPL"):
        EmbeddedSource(("AAPL",)).fetch()


def yahoo_frame(n: int = 260, seed: int = 0, multi: bool = False, ticker: str = "SPY") -> pd.DataFrame:
    """A frame shaped like yfinance's answer: capitalised columns, a Date index, Adj Close absent."""
    bars = make_bars(n, seed=seed).rename(columns=str.capitalize).set_index("Date")
    bars.index = bars.index.tz_localize("America/New_York")
    if multi:
        bars.columns = pd.MultiIndex.from_product([bars.columns, [ticker]], names=["Price", "Ticker"])
    return bars


class FakeYahoo:
    """Stands in for the network behind ``yf.download``: answers, failures and hangs per call."""

    def __init__(self, answers: dict[str, list[Any]]):
        self.answers = {k: list(v) for k, v in answers.items()}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, ticker: str | list[str], **kwargs: Any) -> pd.DataFrame | None:
        self.calls.append((ticker if isinstance(ticker, str) else ",".join(ticker), kwargs))
        if isinstance(ticker, list):
            return self.batch(ticker, **kwargs)
        answer = self.next(ticker)
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, str) and answer == "hang":
            time.sleep(30)
            return None
        return answer  # type: ignore[no-any-return]

    def next(self, key: str) -> Any:
        return self.answers[key].pop(0) if len(self.answers[key]) > 1 else self.answers[key][0]

    def batch(self, tickers: list[str], **kwargs: Any) -> pd.DataFrame | None:
        """What ``yf.download`` gives for a list with ``group_by="ticker"``: (Ticker, Price) columns over the union
        of the dates, NaN where a ticker has no bar, all-NaN columns for a ticker that failed. An answer keyed by
        the batch ("A,B") stands for the whole call (an exception: the call failed)."""
        assert kwargs["group_by"] == "ticker" and kwargs["multi_level_index"] is True
        key = ",".join(tickers)
        if key in self.answers:
            answer = self.next(key)
            if isinstance(answer, BaseException):
                raise answer
            return answer  # type: ignore[no-any-return]
        frames = {}
        for ticker in tickers:
            answer = self.next(ticker)
            if isinstance(answer, pd.DataFrame) and not answer.empty:
                frame = answer.droplevel(1, axis=1) if isinstance(answer.columns, pd.MultiIndex) else answer
                frames[ticker.upper()] = frame
            else:  # yfinance logs the error and keeps the ticker, without bars
                frames[ticker.upper()] = pd.DataFrame(columns=["Open", "High", "Low", "Close", "Volume"], dtype=float)
        return pd.concat(frames.values(), axis=1, sort=True, keys=frames.keys(), names=["Ticker", "Price"])


def source(fake: FakeYahoo, *tickers: str, **kwargs: Any) -> tuple[YFinanceSource, list[float]]:
    sleeps: list[float] = []
    options: dict[str, Any] = {"deadline_seconds": 5.0, "attempts": 3, "backoff_seconds": 0.5}
    options.update(kwargs)
    return YFinanceSource(tuple(tickers), download=fake, sleep=sleeps.append, **options), sleeps


@pytest.mark.parametrize("multi", [False, True])
def test_yfinance_success_is_normalised(multi: bool) -> None:
    fake = FakeYahoo({"SPY": [yahoo_frame(multi=multi)]})
    yf_source, _ = source(fake, "SPY")
    frame = yf_source.fetch()
    assert list(frame.columns) == ["symbol", "date", "open", "high", "low", "close", "volume"]
    assert (frame["symbol"] == "SPY").all()
    assert len(frame) == 260
    assert frame["date"].dt.tz is None
    _, kwargs = fake.calls[0]
    assert kwargs["auto_adjust"] is True
    assert kwargs["interval"] == "1d"
    assert kwargs["timeout"] == 20.0


def test_yfinance_empty_frame_is_an_error_naming_the_ticker() -> None:
    fake = FakeYahoo({"SPY": [pd.DataFrame()]})
    yf_source, sleeps = source(fake, "SPY")
    with pytest.raises(SourceError, match=r"download failed: no bars for SPY.*gave up after 3 attempt"):
        yf_source.fetch()
    assert len(fake.calls) == 3
    assert sleeps == [0.5, 1.0]  # exponential backoff between the attempts


def test_yfinance_retries_transient_errors_then_succeeds() -> None:
    fake = FakeYahoo({"SPY": [ConnectionError("reset by peer"), yahoo_frame()]})
    yf_source, sleeps = source(fake, "SPY")
    assert len(yf_source.fetch()) == 260
    assert len(fake.calls) == 2
    assert sleeps == [0.5]


def test_yfinance_partial_download_names_missing_and_received_tickers() -> None:
    fake = FakeYahoo({"SPY": [yahoo_frame()], "QQQ": [None]})
    yf_source, _ = source(fake, "SPY", "QQQ", attempts=1)
    with pytest.raises(SourceError, match=r"partial download: no bars for QQQ \(got SPY\)"):
        yf_source.fetch()


def test_yfinance_hang_is_cut_by_the_overall_deadline() -> None:
    fake = FakeYahoo({"SPY": ["hang"]})
    yf_source, _ = source(fake, "SPY", deadline_seconds=0.5)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"overall deadline of 0\.5 s passed while downloading"):
        yf_source.fetch()
    assert time.monotonic() - started < 2.0
    assert all(t.daemon for t in threading.enumerate() if t.name == "yfinance-download")


def test_yfinance_backoff_never_sleeps_past_the_deadline() -> None:
    fake = FakeYahoo({"SPY": [pd.DataFrame()]})
    yf_source, sleeps = source(fake, "SPY", deadline_seconds=1.0, backoff_seconds=5.0)
    with pytest.raises(SourceError, match="deadline"):
        yf_source.fetch()
    assert sleeps == []
    assert len(fake.calls) == 1


def test_real_yfinance_offline_fails_fast_and_clearly(store: SnapshotStore) -> None:
    """The real yfinance client with no network: an empty answer becomes an error, not an empty snapshot."""
    yf_source = YFinanceSource(("^GSPC",), start="2020-01-01", end="2020-02-01", attempts=1, deadline_seconds=15)
    outcome: pd.DataFrame | str
    try:
        outcome = yf_source.fetch()
    except SourceError as error:
        outcome = str(error)
    if isinstance(outcome, str):
        assert "no bars for ^GSPC" in outcome
    else:  # a machine with network access: the answer must be real bars
        assert len(outcome) > 10


def test_failed_pull_points_at_cached_snapshots_and_writes_nothing(store: SnapshotStore) -> None:
    with pytest.raises(PullError, match="No cached snapshots exist"):
        pull(source(FakeYahoo({"SPY": [None]}), "SPY", attempts=1)[0], store)
    cached, _ = store.write(pd.concat([make_bars(20).assign(symbol="SPY")], ignore_index=True), source="csv")
    with pytest.raises(PullError) as caught:
        pull(source(FakeYahoo({"SPY": [None]}), "SPY", attempts=1)[0], store)
    assert cached.id in str(caught.value)
    assert "no bars for SPY" in str(caught.value)
    assert [s.id for s in store.snapshots()] == [cached.id]


def test_yfinance_pull_is_validated_before_it_is_stored(store: SnapshotStore) -> None:
    bad = yahoo_frame()
    bad.iloc[3, bad.columns.get_loc("High")] = 1.0
    with pytest.raises(OHLCVValidationError, match="high_below_open_close"):
        pull(source(FakeYahoo({"SPY": [bad]}), "SPY")[0], store)
    assert store.snapshots() == []


def test_csv_source_single_symbol(tmp_path: Path) -> None:
    path = tmp_path / "AAPL.csv"
    make_bars(40).rename(columns=str.title).to_csv(path, index=False)
    frame = CsvSource(path).fetch()
    assert (frame["symbol"] == "AAPL").all()
    assert len(frame) == 40


def test_csv_source_with_symbols_and_a_filter(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    pd.concat([make_bars(10).assign(symbol="A"), make_bars(12).assign(symbol="B")]).to_csv(path, index=False)
    assert len(CsvSource(path).fetch()) == 22
    assert len(CsvSource(path, symbol="B").fetch()) == 12
    with pytest.raises(SourceError, match="no bars for C"):
        CsvSource(path, symbol="C").fetch()


def test_csv_source_missing_columns_and_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    make_bars(5).drop(columns=["volume"]).to_csv(path, index=False)
    with pytest.raises(SourceError, match="volume"):
        CsvSource(path).fetch()
    with pytest.raises(SourceError, match="cannot read"):
        CsvSource(tmp_path / "missing.csv").fetch()


def test_csv_with_bad_rows_is_rejected_with_every_violation(tmp_path: Path, store: SnapshotStore) -> None:
    path = tmp_path / "X.csv"
    frame = make_bars(10)
    frame.loc[2, "close"] = -1.0
    frame.loc[5, "date"] = frame.loc[4, "date"]
    frame.to_csv(path, index=False)
    with pytest.raises(OHLCVValidationError) as caught:
        pull(CsvSource(path), store)
    assert {v.rule for v in caught.value.violations} >= {"price_not_positive", "date_duplicate"}
    assert store.snapshots() == []


def test_csv_round_trip_preserves_values(tmp_path: Path, store: SnapshotStore) -> None:
    path = tmp_path / "X.csv"
    original = make_bars(25, seed=4)
    original.to_csv(path, index=False, float_format="%.17g")
    info, created = pull(CsvSource(path), store)
    loaded = store.load(info.id)
    assert created
    np.testing.assert_array_equal(loaded["close"].to_numpy(), original["close"].to_numpy())


def universe_answers() -> FakeYahoo:
    """Four good tickers (one listed later, one ended early), one that errors, one empty, one too short."""
    return FakeYahoo(
        {
            "AAA": [yahoo_frame(n=300, seed=1)],
            "BBB": [yahoo_frame(n=300, seed=2)],
            "LATE": [yahoo_frame(n=300, seed=3).iloc[40:]],
            "GONE": [yahoo_frame(n=300, seed=4).iloc[:-20]],
            "ERR": [ConnectionError("reset by peer")],
            "EMPTY": [pd.DataFrame()],
            "SHORT": [yahoo_frame(n=100, seed=5)],
        }
    )


def test_a_universe_pull_fails_naming_every_missing_ticker_with_its_reason() -> None:
    yf_source, _ = source(universe_answers(), "AAA", "BBB", "LATE", "GONE", "ERR", "EMPTY", "SHORT", attempts=1)
    with pytest.raises(SourceError) as raised:
        yf_source.fetch()
    message = str(raised.value)
    assert "partial download: no bars for ERR, EMPTY, SHORT (got AAA, BBB, LATE, GONE)" in message
    assert "ERR: gave up after 1 attempt(s) (attempt 1: ConnectionError: reset by peer)" in message
    assert "SHORT: 100 bars, fewer than the 252 the features need" in message
    assert "--allow-missing" in message


def test_allow_missing_writes_the_others_and_records_the_missing_and_flagged(store: SnapshotStore) -> None:
    tickers = ("AAA", "BBB", "LATE", "GONE", "ERR", "EMPTY", "SHORT")
    yf_source, _ = source(universe_answers(), *tickers, attempts=1, allow_missing=True)
    info, _ = pull(yf_source, store)
    assert info.symbols == ["AAA", "BBB", "GONE", "LATE"]
    assert set(info.origin["missing"]) == {"ERR", "EMPTY", "SHORT"}
    assert "fewer than the 252" in info.origin["missing"]["SHORT"]
    assert set(info.origin["flagged"]) == {"LATE", "GONE"}
    assert "delisted?" in info.origin["flagged"]["GONE"] and "starts" in info.origin["flagged"]["LATE"]
    assert store.info(info.id).origin["missing"] == info.origin["missing"]  # in the manifest


def test_a_universe_is_asked_for_in_batches_and_what_a_batch_lacks_alone() -> None:
    """Seven tickers in batches of three: three calls for the batches, then one call for each ticker a batch brought
    back no bars for (ERR, EMPTY; SHORT came back, too short), each reported with its own reason."""
    fake = universe_answers()
    tickers = ("AAA", "BBB", "LATE", "GONE", "ERR", "EMPTY", "SHORT")
    yf_source, _ = source(fake, *tickers, attempts=1, allow_missing=True, batch_size=3)
    frame = yf_source.fetch()
    assert [call for call, _ in fake.calls] == ["AAA,BBB,LATE", "GONE,ERR,EMPTY", "ERR", "EMPTY", "SHORT"]
    assert sorted(frame["symbol"].unique()) == ["AAA", "BBB", "GONE", "LATE"]
    late = frame[frame["symbol"] == "LATE"]
    assert len(late) == 260 and late["close"].notna().all()  # the batch's shared dates it has no bar on are dropped
    expected = yahoo_frame(n=300, seed=3).iloc[40:]
    np.testing.assert_array_equal(late["close"].to_numpy(), expected["Close"].to_numpy())
    missing = yf_source.outcome["missing"]
    assert missing["ERR"] == "gave up after 1 attempt(s) (attempt 1: ConnectionError: reset by peer)"
    assert missing["EMPTY"] == "gave up after 1 attempt(s) (attempt 1: empty result)"


def test_a_failed_batch_call_is_retried_then_its_tickers_are_asked_for_alone() -> None:
    fake = FakeYahoo(
        {
            "AAA,BBB": [ConnectionError("reset"), ConnectionError("reset")],
            "AAA": [yahoo_frame(n=300, seed=1)],
            "BBB": [yahoo_frame(n=300, seed=2)],
        }
    )
    yf_source, sleeps = source(fake, "AAA", "BBB", attempts=2)
    assert sorted(yf_source.fetch()["symbol"].unique()) == ["AAA", "BBB"]
    assert [call for call, _ in fake.calls] == ["AAA,BBB", "AAA,BBB", "AAA", "BBB"]
    assert sleeps == [0.5]  # the batch's one retry; the single calls succeeded at once


def test_batched_and_single_downloads_give_the_same_bars() -> None:
    tickers = ("AAA", "BBB", "LATE", "GONE")
    batched, _ = source(universe_answers(), *tickers, attempts=1)
    alone, _ = source(universe_answers(), *tickers, attempts=1, batch_size=1)
    pd.testing.assert_frame_equal(batched.fetch(), alone.fetch(), check_dtype=False)


def test_allow_missing_still_fails_when_nothing_came_back() -> None:
    yf_source, _ = source(FakeYahoo({"ERR": [None]}), "ERR", attempts=1, allow_missing=True)
    with pytest.raises(SourceError, match="download failed: no bars for ERR"):
        yf_source.fetch()


def test_data_show_lists_the_missing_and_flagged_tickers() -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from data.settings import DataSettings

    tickers = ("AAA", "BBB", "LATE", "GONE", "ERR", "EMPTY", "SHORT")
    yf_source, _ = source(universe_answers(), *tickers, attempts=1, allow_missing=True)
    pull(yf_source, SnapshotStore(DataSettings().snapshots))
    shown = CliRunner().invoke(app, ["data", "show"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "missing, not in the snapshot: 3 ticker(s)" in shown.output
    assert "SHORT: 100 bars, fewer than the 252 the features need" in shown.output
    assert "kept, flagged: 2 ticker(s)" in shown.output
    help_text = CliRunner().invoke(app, ["data", "pull", "--help"], env={"COLUMNS": "200"}).output
    assert "--allow-missing" in help_text
