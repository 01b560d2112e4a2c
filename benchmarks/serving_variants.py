"""The other paths of the serving-paths benchmark, as runners a served variant swaps in (bench_serving_paths.py).

Imported by the benchmark and, through the ``sitecustomize`` it writes, by the workers of a served variant: light
to import (numpy only), so that it adds nothing to the cold start it measures beyond what the swapped runner loads.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

VARIANT = "MLOPS_BENCH_VARIANT"  # set in a served variant's environment: which runner to swap
NATIVE_RUNNERS = "MLOPS_BENCH_NATIVE_RUNNERS"  # the file of the old runners module, in a served variant's environment
SITECUSTOMIZE = f'''"""Written by benchmarks/bench_serving_paths.py: swaps a runner class as bentos.runners loads."""
import importlib.abc
import importlib.machinery
import os
import sys


class _SwapRunner(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "bentos.runners" or "{VARIANT}" not in os.environ:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            from benchmarks.serving_variants import install_variant

            install_variant(module, os.environ["{VARIANT}"])

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _SwapRunner())
'''


# the other paths, as runners ---------------------------------------------------------------------------------------
def native_runners(path: Path) -> ModuleType:
    """``bentos/runners.py`` as of NATIVE_REF (saved at ``path``), imported under a name of its own."""
    spec = importlib.util.spec_from_file_location("mlops_bench_native_runners", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def library_runners(runners: ModuleType) -> dict[str, type]:
    """The forest and regime runners of ``runners`` predicting through scikit-learn and hmmlearn, as a library
    path would (each loads its library when constructed, in the worker before ``/readyz``)."""
    base_forest: type = runners.ForestRunner
    base_regime: type = runners.RegimeRunner

    class SklearnForestRunner(base_forest):
        def __init__(self, model: Any):
            super().__init__(model)
            self.load_batch_model()

        def predict(self, features: np.ndarray) -> np.ndarray:
            return np.asarray(self.forest.predict(np.atleast_2d(features)))

    class HmmlearnRegimeRunner(base_regime):
        def __init__(self, model: Any):
            super().__init__(model)
            self.hmm = self.model.hmm()

        def predict(self, feature_rows: np.ndarray) -> tuple[int, np.ndarray]:
            from features import DEFAULT_SPEC

            observations = self.model.observations(feature_rows, list(DEFAULT_SPEC.names))
            probabilities = np.asarray(self.hmm.predict_proba(observations)[-1])
            return int(np.argmax(probabilities)), probabilities

    return {"forest": SklearnForestRunner, "regime": HmmlearnRegimeRunner}


def install_variant(runners: ModuleType, variant: str) -> None:
    """Swap the runner of one path in ``bentos.runners`` (called in a served variant's processes)."""
    if variant == "native-booster":
        old = native_runners(Path(os.environ[NATIVE_RUNNERS]))
        runners.RUNNERS.update(booster=old.BoosterRunner, direction=old.DirectionRunner)
    elif variant in ("sklearn-forest", "hmmlearn-regime"):
        kind = variant.split("-")[1]
        runners.RUNNERS[kind] = library_runners(runners)[kind]
    else:
        raise ValueError(f"unknown variant {variant!r}")


def hmmlearn_regime_filter(base: type) -> type:
    """Batch inference's ``RegimeFilter`` (``base``) answering through hmmlearn: one ``predict_proba`` a date, on
    the date's context window (the observations themselves travel in place of the log densities)."""

    class HmmlearnRegimeFilter(base):
        def emissions(self, observations: np.ndarray, valid: np.ndarray) -> np.ndarray:
            return np.where(valid[:, None], observations, np.nan)

        def posteriors(self, segments: list[Any]) -> np.ndarray:
            hmm = self.model.hmm()
            answers = []
            for first, values, _, n_emit in segments:
                for t in range(values.shape[0] - n_emit, values.shape[0]):
                    start = max(self.lookback, first + t - self.context_rows + 1) - first  # the service's context
                    context = values[start : t + 1]
                    context = context[np.isfinite(context).all(axis=1)]
                    answers.append(
                        hmm.predict_proba(context)[-1] if len(context) else np.full(hmm.n_components, np.nan)
                    )
            return np.asarray(answers)

    return HmmlearnRegimeFilter
