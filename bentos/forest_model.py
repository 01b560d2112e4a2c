"""Serving side of ``return_random_forest``: the fitted forest's trees as flat node arrays.

The trainer stores a scikit-learn ``RandomForestRegressor`` with BentoML (``bentoml.sklearn``, a joblib pickle)
and, beside it in the model's custom objects, :func:`forest_nodes` of it: every tree's nodes in one set of arrays.
The service predicts up to 64 rows from those arrays, walking all the trees at once (a dozen numpy calls a level);
scikit-learn's ``predict`` makes a Python call per tree. Larger batches (batch inference) go to scikit-learn.

A hand-written path, kept by issue 13's rule (a 2x gain on a figure a user feels), measured side by side with
scikit-learn's ``predict`` for every row (``benchmarks/bench_serving_paths.py``, ``benchmarks/results/
serving_paths.md``; production-size forest of 200 trees of depth 8): one row in 0.07 ms against 26 ms in process,
so ``predict_return(model="random_forest")`` answered over HTTP in 6.5 ms p50 against 41.5 ms (6.4x) and
``predict_all`` in 10.0 ms against 46.2 ms (4.6x). It no longer spares the worker scikit-learn's import (the
``lightgbm`` package imports it), so its cold start gains nothing (0.93x, noise); over 64 rows scikit-learn is
faster (112k rows/s against the walk's 28k), hence the split.

:class:`FlatForest` gives scikit-learn's answer to the bit: at each node a float32 feature value is compared, as a
float64, with the node's threshold (a missing value goes where the node sends missing values), and the trees' leaf
values are summed in the forest's order before dividing by the number of trees, as ``RandomForestRegressor.predict``
does with one job. :meth:`FlatForest.check` compares the two where both are at hand (training, tests, and serving a
forest stored before the arrays were).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The key of the node arrays in the BentoML model's custom objects.
CUSTOM_OBJECT = "forest_nodes"
FORMAT_VERSION = 1
_FIELDS = ("feature", "threshold", "missing_left", "children", "value", "roots")


def forest_nodes(forest: Any) -> dict[str, Any]:
    """The nodes of a fitted one-output ``RandomForestRegressor`` (or any forest of sklearn trees) as flat arrays.

    Node ``i`` of tree ``t`` becomes node ``roots[t] + i``. A leaf points to itself, so walking every tree for the
    deepest tree's number of levels leaves each row in its leaf in every tree.
    """
    if getattr(forest, "n_outputs_", 1) != 1:
        raise ValueError("only a one-output forest regression can be stored as flat nodes")
    trees = [estimator.tree_ for estimator in forest.estimators_]
    sizes = np.array([tree.node_count for tree in trees])
    roots = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    feature, threshold, missing_left, left, right, value = [], [], [], [], [], []
    for tree, root in zip(trees, roots, strict=True):
        leaf = tree.children_left == -1
        own = np.arange(tree.node_count) + root
        feature.append(np.where(leaf, 0, tree.feature))
        threshold.append(np.where(leaf, np.inf, tree.threshold))
        # scikit-learn >= 1.3 sends a missing value one way per node; older trees have no such array (no NaN support)
        missing = getattr(tree, "missing_go_to_left", np.zeros(tree.node_count, dtype=np.uint8))
        missing_left.append(np.asarray(missing, dtype=bool) | leaf)
        left.append(np.where(leaf, own, tree.children_left + root))
        right.append(np.where(leaf, own, tree.children_right + root))
        value.append(tree.value[:, 0, 0])
    # children[2 * i + 1] is node i's left child, children[2 * i] its right one: one gather a level
    children = np.empty(2 * int(sizes.sum()), dtype=np.int64)
    children[1::2] = np.concatenate(left)
    children[0::2] = np.concatenate(right)
    return {
        "format_version": FORMAT_VERSION,
        "n_features": int(forest.n_features_in_),
        "depth": int(max(tree.max_depth for tree in trees)),
        "feature": np.concatenate(feature).astype(np.int64),
        "threshold": np.concatenate(threshold).astype(np.float64),
        "missing_left": np.concatenate(missing_left),
        "children": children,
        "value": np.concatenate(value).astype(np.float64),
        "roots": roots.astype(np.int64),
    }


class FlatForest:
    """Predictions of a forest from :func:`forest_nodes`, scikit-learn's to the bit, without scikit-learn."""

    def __init__(self, nodes: dict[str, Any]):
        version = nodes.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"forest node format {version!r} is not supported (this code reads {FORMAT_VERSION})")
        missing = [name for name in _FIELDS if name not in nodes]
        if missing:
            raise ValueError(f"forest nodes lack {', '.join(missing)}")
        self.n_features = int(nodes["n_features"])
        self.depth = int(nodes["depth"])
        self.feature = np.ascontiguousarray(nodes["feature"], dtype=np.intp)
        self.threshold = np.ascontiguousarray(nodes["threshold"], dtype=np.float64)
        self.missing_left = np.ascontiguousarray(nodes["missing_left"], dtype=bool)
        self.children = np.ascontiguousarray(nodes["children"], dtype=np.intp)
        self.value = np.ascontiguousarray(nodes["value"], dtype=np.float64)
        self.roots = np.ascontiguousarray(nodes["roots"], dtype=np.intp)
        n = self.feature.shape[0]
        if not (self.threshold.shape == self.missing_left.shape == self.value.shape == (n,)):
            raise ValueError("forest node arrays differ in length")
        if self.children.shape != (2 * n,) or (self.children < 0).any() or (self.children >= n).any():
            raise ValueError("forest children point outside the nodes")
        if (self.feature < 0).any() or (self.feature >= self.n_features).any():
            raise ValueError(f"forest nodes split on features outside 0..{self.n_features - 1}")

    @property
    def n_trees(self) -> int:
        return int(self.roots.shape[0])

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """One prediction per row of ``rows`` (n, n_features)."""
        x = np.ascontiguousarray(np.atleast_2d(rows), dtype=np.float32)  # the dtype scikit-learn's trees compare in
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {np.shape(rows)}")
        flat = x.reshape(-1)
        # node[r, t]: where row r is in tree t; row r's feature j is flat[r * n_features + j]
        node = self.roots[None, :] if x.shape[0] == 1 else np.broadcast_to(self.roots, (x.shape[0], self.n_trees))
        offsets = None if x.shape[0] == 1 else (np.arange(x.shape[0]) * self.n_features)[:, None]
        has_missing = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            at = self.feature[node] if offsets is None else self.feature[node] + offsets
            values = flat[at]
            go_left = values <= self.threshold[node]  # float32 against float64, as scikit-learn compares
            if has_missing:
                go_left |= np.isnan(values) & self.missing_left[node]
            node = self.children[(node << 1) + go_left]
        leaves = self.value[node]
        # the forest's order: tree by tree (a cumulative sum adds left to right; np.sum would pair them)
        return np.cumsum(leaves, axis=1)[:, -1] / self.n_trees

    def check(self, forest: Any, probes: int = 64, seed: int = 0) -> None:
        """Raise ValueError unless these nodes predict exactly what ``forest.predict`` does on random rows."""
        rng = np.random.default_rng(seed)
        rows = rng.normal(size=(probes, self.n_features)) * 0.05
        rows[1, ::3] = np.nan
        expected = np.asarray(forest.predict(rows), dtype=np.float64)
        got = self.predict(rows)
        if not np.array_equal(got, expected):
            worst = float(np.nanmax(np.abs(got - expected)))
            raise ValueError(
                f"the flat forest does not reproduce the forest's predictions (largest difference {worst})"
            )
