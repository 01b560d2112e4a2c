"""PSI against a stored reference: hand-computed values, empty bins, thresholds and the persistence rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring.drift import FLOOR, level, persistent, psi
from training.evaluation.drift_reference import Reference, reference, shares


def test_psi_equals_the_hand_computed_value() -> None:
    ref = reference(np.arange(1, 11), bins=2)  # the median of 1..10 is 5.5: half the values each side
    assert ref == Reference(edges=(5.5,), shares=(0.5, 0.5), count=10)
    recent = [1, 2, 3, 8, 9, 10, 10, 10, 10, 10]  # 30 % below 5.5, 70 % above
    expected = (0.3 - 0.5) * math.log(0.3 / 0.5) + (0.7 - 0.5) * math.log(0.7 / 0.5)  # 0.16946
    assert psi(ref, recent) == pytest.approx(expected, abs=1e-12)
    assert round(expected, 5) == 0.16946 and level(psi(ref, recent)) == "warn"


def test_an_empty_bin_counts_with_the_floor() -> None:
    ref = reference(np.arange(1, 11), bins=2)
    expected = (1 - 0.5) * math.log(1 / 0.5) + (FLOOR - 0.5) * math.log(FLOOR / 0.5)
    assert psi(ref, [1, 2, 3]) == pytest.approx(expected)
    assert level(psi(ref, [1, 2, 3])) == "alert"


def test_the_same_distribution_is_stable_and_nan_is_ignored() -> None:
    rng = np.random.default_rng(0)
    ref = reference(rng.normal(size=50_000))
    assert len(ref.edges) == 9 and all(s == pytest.approx(0.1) for s in ref.shares)
    same = np.concatenate([rng.normal(size=5_000), [np.nan, np.inf]])
    assert psi(ref, same) < 0.01 and level(psi(ref, same)) == "ok"
    assert level(psi(ref, rng.normal(loc=1.0, size=5_000))) == "alert"  # a one-sigma shift


def test_ties_merge_bins_and_values_on_an_edge_go_up() -> None:
    ref = reference([0, 0, 0, 0, 0, 0, 0, 0, 1, 2], bins=5)  # quintile edges 0, 0, 0, 0.2: two bins remain
    assert ref.edges == pytest.approx((0.0, 0.2)) and ref.shares == pytest.approx((0.0, 0.8, 0.2))
    assert shares([0.0, 1.0], ref.edges).tolist() == [0.0, 0.5, 0.5]


def test_the_reference_round_trips_and_is_validated() -> None:
    ref = reference(np.linspace(0, 1, 101), bins=4)
    assert Reference.from_dict(ref.to_dict()) == ref
    with pytest.raises(ValueError, match="shares"):
        Reference((0.0,), (1.0,), 1)
    with pytest.raises(ValueError, match="ascending"):
        Reference((1.0, 0.0), (0.3, 0.3, 0.4), 1)
    with pytest.raises(ValueError, match="no finite values"):
        reference([np.nan])


def test_levels_and_persistence() -> None:
    assert [level(v) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25)] == ["ok", "ok", "warn", "warn", "alert"]
    assert level(0.15, warn=0.2, alert=0.3) == "ok"
    assert persistent(["ok", "alert", "alert", "alert"], days=3)
    assert not persistent(["alert", "alert", "warn", "alert"], days=3)  # broken by a warn
    assert not persistent(["alert", "alert"], days=3)  # not yet long enough
    with pytest.raises(ValueError, match="at least 1"):
        persistent([], days=0)
