"""FeatureSpec: what a model was trained on (ordered names, parameters, lookback) and a hash that pins it."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.pipeline import Bars, FeatureParams, compute_feature_columns, feature_layout, stack_windows

#: Modules whose code defines the features: any change to their logic changes the code version.
_FEATURE_CODE = ("pipeline.py", "windows.py")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def feature_code_version() -> str:
    """A hash of the feature code's syntax tree: comments, docstrings and formatting do not change it."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in _FEATURE_CODE:
        tree = _strip_docstrings(ast.parse((here / name).read_text(encoding="utf-8")))
        digest.update(name.encode())
        digest.update(ast.dump(tree, annotate_fields=False).encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered feature names, the parameters behind them, the lookback and the code version.

    ``lookback`` is the number of bars needed before the first complete feature row, so a window of
    ``min_bars = lookback + 1`` bars yields one row.
    """

    names: tuple[str, ...]
    params: FeatureParams
    lookback: int
    code_version: str

    @property
    def min_bars(self) -> int:
        return self.lookback + 1

    @property
    def version_hash(self) -> str:
        return _spec_hash(self.names, self.params, self.lookback, self.code_version)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, as stored in model cards."""
        return {
            "names": list(self.names),
            "params": dataclasses.asdict(self.params),
            "lookback": self.lookback,
            "code_version": self.code_version,
            "version_hash": self.version_hash,
        }

    def compute(self, bars: Bars, rows: int | None = None) -> np.ndarray:
        """The feature matrix (bars x features, float64), NaN where the lookback is not met.

        With ``rows``, only the last ``rows`` bars' features (the same values as the full matrix's last rows).
        """
        columns = compute_feature_columns(bars, self.params, rows)
        # np.array then moving the feature axis last: the same matrix as np.stack(axis=-1) at half the cost
        return np.moveaxis(np.array([columns[name] for name in self.names]), 0, -1)

    def compute_latest_stacked(self, windows: list[Bars]) -> np.ndarray:
        """The last bar's feature row of each window (windows x features), in one pass over them all.

        Each row equals ``compute_latest`` of its window: a row depends on the window's last ``min_bars`` bars
        only, so the windows are cut to that length and stacked.
        """
        stacked = stack_windows([w.tail(self.min_bars) for w in windows])
        return self.compute(stacked, rows=1)[:, 0, :]

    def compute_latest(self, bars: Bars) -> np.ndarray:
        """The feature row of the last bar (NaN where the window is shorter than ``min_bars``)."""
        return self.compute(bars, rows=1)[0]

    def frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Features of a validated single-symbol bar frame, indexed by date."""
        matrix = self.compute(Bars.from_frame(frame))
        return pd.DataFrame(matrix, columns=list(self.names), index=pd.DatetimeIndex(frame["date"], name="date"))


@cache
def _spec_hash(names: tuple[str, ...], params: FeatureParams, lookback: int, code_version: str) -> str:
    payload = json.dumps(
        {
            "names": list(names),
            "params": dataclasses.asdict(params),
            "lookback": lookback,
            "code_version": code_version,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_spec(params: FeatureParams | None = None) -> FeatureSpec:
    """The FeatureSpec of ``params`` (the defaults when omitted) with the current code version."""
    params = params or FeatureParams()
    layout = feature_layout(params)
    return FeatureSpec(
        names=tuple(name for name, _ in layout),
        params=params,
        lookback=max(prior for _, prior in layout),
        code_version=feature_code_version(),
    )


DEFAULT_SPEC = build_spec()
