"""The FeatureSpec hash pins names, parameters, lookback and code."""

from __future__ import annotations

import ast
import dataclasses

from features import DEFAULT_SPEC, FeatureParams, build_spec
from features.spec import _strip_docstrings, feature_code_version


def test_hash_is_stable_and_short() -> None:
    assert build_spec().version_hash == DEFAULT_SPEC.version_hash
    assert len(DEFAULT_SPEC.version_hash) == 16


def test_hash_changes_with_names_params_lookback_and_code() -> None:
    base = DEFAULT_SPEC
    variants = [
        dataclasses.replace(base, names=base.names[:-1]),
        dataclasses.replace(base, names=(base.names[1], base.names[0], *base.names[2:])),
        dataclasses.replace(base, lookback=base.lookback + 1),
        dataclasses.replace(base, code_version="0" * 16),
        build_spec(FeatureParams(rsi_window=10)),
        build_spec(FeatureParams(trading_days_per_year=260)),
    ]
    hashes = {base.version_hash, *(v.version_hash for v in variants)}
    assert len(hashes) == len(variants) + 1


def test_lookback_follows_the_longest_window() -> None:
    assert DEFAULT_SPEC.lookback == 251
    assert DEFAULT_SPEC.min_bars == 252
    assert build_spec(FeatureParams(extremes_window=126)).lookback == 199  # then the 200-day average
    assert build_spec(FeatureParams(extremes_window=60, moving_averages=(10, 50))).lookback == 3 * 26 - 1 + 3 * 9 - 1


def test_code_version_ignores_docstrings_but_not_logic() -> None:
    def dump(source: str) -> str:
        return ast.dump(_strip_docstrings(ast.parse(source)))

    plain = "def f(x):\n    return x + 1\n"
    documented = 'def f(x):\n    """Add one."""\n    # a comment\n    return x + 1\n'
    changed = "def f(x):\n    return x + 2\n"
    assert dump(plain) == dump(documented)
    assert dump(plain) != dump(changed)
    assert len(feature_code_version()) == 16


def test_to_dict_round_trips_the_parameters() -> None:
    card = DEFAULT_SPEC.to_dict()
    assert card["names"] == list(DEFAULT_SPEC.names)
    assert card["version_hash"] == DEFAULT_SPEC.version_hash
    params = FeatureParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in card["params"].items()})
    assert build_spec(params).version_hash == DEFAULT_SPEC.version_hash
