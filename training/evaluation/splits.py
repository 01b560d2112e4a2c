"""Expanding-window walk-forward splits with purging of training targets that reach into the test period."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Split:
    """One refit: train on ``train`` rows, evaluate on ``test`` rows (indices into the panel)."""

    fold: int
    train: np.ndarray
    test: np.ndarray
    test_start: np.datetime64
    test_end: np.datetime64

    def describe(self, dates: np.ndarray) -> dict[str, str | int]:
        return {
            "fold": self.fold,
            "train_start": str(dates[self.train].min()),
            "train_end": str(dates[self.train].max()),
            "test_start": str(self.test_start),
            "test_end": str(self.test_end - np.timedelta64(1, "D")),
            "n_train": int(self.train.size),
            "n_test": int(self.test.size),
        }


def yearly_test_periods(dates: np.ndarray, years: int) -> list[tuple[np.datetime64, np.datetime64]]:
    """The last ``years`` calendar years present in ``dates``, as [start, end) pairs."""
    present = np.unique(dates.astype("datetime64[Y]"))
    if present.size <= years:
        raise ValueError(f"{years} test years need more than {present.size} years of data")
    chosen = present[-years:]
    return [(y.astype("datetime64[D]"), (y + 1).astype("datetime64[D]")) for y in chosen]


def walk_forward_splits(
    dates: np.ndarray,
    target_end: np.ndarray,
    periods: list[tuple[np.datetime64, np.datetime64]],
    min_train: int = 250,
    train_years: int | None = None,
) -> list[Split]:
    """One split per test period: train on every earlier row whose target ends before the period starts (with
    ``train_years``, only those of the last that many years before it: a rolling window).

    A row at t whose target looks ``h`` bars ahead is only known after the bar at t + h. Rows whose
    target ends on or after the test start are purged from training, so no training label contains
    information from the test period. Test rows are those dated inside the period.
    """
    splits = []
    for fold, (start, end) in enumerate(periods):
        first = window_start(start, train_years)
        train = np.flatnonzero((dates >= first) & (dates < start) & ~np.isnat(target_end) & (target_end < start))
        test = np.flatnonzero((dates >= start) & (dates < end))
        if train.size < min_train:
            raise ValueError(f"fold {fold} starting {start} has only {train.size} training rows")
        splits.append(Split(fold, train, test, start, end))
    return splits


def window_start(end: np.datetime64, years: int | None) -> np.datetime64:
    """The first day of the ``years`` calendar years before ``end`` (the dawn of time without ``years``)."""
    if years is None:
        return np.datetime64("0001-01-01", "D")
    return np.datetime64((pd.Timestamp(end) - pd.DateOffset(years=years)).date(), "D")
