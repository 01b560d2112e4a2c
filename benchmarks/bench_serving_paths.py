"""Benchmark of the hand-written serving paths against their libraries' public APIs (issue 13: keep or remove each).

A hand-written path earns its place only with at least a 2x gain on a figure a user feels (DESIGN.md, "Libraries
before hand-written code"). Three paths, each measured against its library in the same run, side by side:

- booster: LightGBM's C library called through ctypes (``NativeBooster``, removed by issue 13; measured from
  ``bentos/runners.py`` as of ``MLOPS_BENCH_NATIVE_REF``) against ``lightgbm.Booster.predict`` (served now);
- forest: the RandomForest's trees as flat node arrays walked in numpy (``bentos/forest_model.py``) against
  scikit-learn's ``RandomForestRegressor.predict``;
- regime: the HMM forward filter in numpy (``bentos/regime_filter.py``) against hmmlearn's
  ``GaussianHMM.predict_proba(window)[-1]``.

Figures a user feels, each with the 2x target on the hand-written path's gain: the sequential p50 of the requests the
path serves over HTTP, the worker's cold start (``bentoml serve`` launch to ``/readyz`` 200), and the throughput of a
batch inference job (``score_file`` on the two embedded indices, features, validation and I/O included). The
in-process figures (one row, one window, many rows; the import time of each library after what the worker imports
anyway) are the parts those are made of: reported without a target.

Served variants: the service as it is, and the same service with one runner swapped for the other path (a
``sitecustomize`` put on the workers' path replaces the runner class when ``bentos.runners`` is imported): the ctypes
booster, scikit-learn's forest for every row, hmmlearn's filter. Models: quick-mode training on the embedded S&P 500
and NASDAQ bars with production-size trees (300 boosting rounds, RandomForest of 200 trees of depth 8).

Some 470 lines because one script measures three paths in three settings (in process, a batch job, served over
HTTP), each pair side by side in one run; the variants themselves are in ``serving_variants.py``.

Run: ``.venv/bin/python benchmarks/bench_serving_paths.py`` (~10 minutes on 2 cores, 2 more to train the models the
first time). ``MLOPS_BENCH_HOME=/some/dir`` keeps the models for later runs; ``MLOPS_BENCH_ROUNDS`` (default 5) sets
the in-process rounds, ``MLOPS_BENCH_COLD_STARTS`` (default 3) the launches per served variant.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving_variants import (  # noqa: E402
    NATIVE_RUNNERS,
    SITECUSTOMIZE,
    VARIANT,
    hmmlearn_regime_filter,
    native_runners,
)

#: The last commit whose ``bentos/runners.py`` holds the ctypes booster (``NativeBooster``), removed after it.
NATIVE_REF = os.environ.get("MLOPS_BENCH_NATIVE_REF", "10c5af61ca38831870140e27193d6951c1fb5a23")
ROUNDS = int(os.environ.get("MLOPS_BENCH_ROUNDS", "5"))
COLD_STARTS = int(os.environ.get("MLOPS_BENCH_COLD_STARTS", "3"))
SEQUENTIAL_REQUESTS = 150
GAIN_TARGET = ">= 2x"
BATCH_ROWS = 100_000
#: Bars of a request's window: the lookback (251) and the regime's context (250 rows) fit in it.
WINDOW_BARS = 600


# measurement helpers ------------------------------------------------------------------------------------------------
def interleaved(calls: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each call's figure in each of ``rounds`` rounds, the calls taking turns within a round."""
    results: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(rounds):
        for label, call in calls.items():
            results[label].append(call())
    return results


def p50_ms(function: Callable[[], object], repeats: int, warmup: int = 20) -> Callable[[], float]:
    from benchmarks._report import time_calls

    return lambda: float(np.median(time_calls(function, repeats, warmup)))


def rows_per_second(function: Callable[[], object], rows: int) -> Callable[[], float]:
    def measure() -> float:
        started = time.perf_counter()
        function()
        return rows / (time.perf_counter() - started)

    return measure


def import_seconds(modules: str, after: str = "numpy, pandas, bentoml") -> float:
    """Seconds to import ``modules`` in a fresh interpreter that has imported ``after`` (what the worker imports
    anyway), from ``python -X importtime``: the cumulative times of the top-level imports after a marker."""
    code = f"import {after}; import sys; sys.stderr.write('MARK\\n'); import {modules}"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    after_mark = done.stderr.split("MARK\n", 1)[1]
    total = 0
    for line in after_mark.splitlines():
        fields = line.split("|")
        if line.startswith("import time:") and len(fields) == 3 and not fields[2].startswith("  "):
            total += int(fields[1])  # a top-level import (nested ones are indented further), its cumulative us
    return total / 1e6


# the measurements ---------------------------------------------------------------------------------------------------
def production_size_models(work: Path, manifest: Path) -> dict[str, str]:
    """Quick-mode models with production-size trees, trained once into the benchmark's store and promoted."""
    import bentoml

    from bentos.production import write_manifest
    from features import DEFAULT_SPEC

    if manifest.is_file():
        tags = dict(json.loads(manifest.read_text())["models"])
        forest: Any = bentoml.models.get(tags["return_random_forest"]).info.metadata
        cards = [bentoml.models.get(tag).info.metadata for tag in tags.values()]
        if forest["hyperparameters"]["n_estimators"] == 200 and all(
            card.get("feature_spec_hash") == DEFAULT_SPEC.version_hash for card in cards
        ):
            return tags
    from data.pull import pull
    from data.settings import DataSettings
    from data.snapshots import SnapshotStore
    from data.sources import EmbeddedSource
    from training.config import TrainingConfig
    from training.registry.promotion import Registry
    from training.run import train

    store = SnapshotStore(DataSettings().snapshots)
    info, _ = pull(EmbeddedSource(), store)
    config = TrainingConfig.quick(rf_trees=200, rf_max_depth=8, lgbm_rounds=300, lgbm_learning_rate=0.03)
    started = time.perf_counter()
    run = train(info.id, config=config, store=store, reports_root=work / "reports")
    assert run.ok, run.failures
    print(f"trained six models in {time.perf_counter() - started:.0f} s", flush=True)
    registry = Registry()
    registry.promote(list(run.tags().values()), reason="serving paths benchmark")
    tags = registry.production()
    write_manifest(manifest, tags)
    return tags


def in_process(tags: dict[str, str], native: ModuleType, work: Path) -> dict[str, list[float]]:
    """One row, one window and many rows through each path and its library, and a batch job with each."""
    import bentoml
    import pandas as pd

    from bentos import batch_scoring
    from bentos.batch import BatchModels, score_file
    from bentos.runners import load_runner
    from data.sources import EmbeddedSource
    from features import DEFAULT_SPEC, Bars, validate_ohlcv

    served: dict[str, Any] = {name: load_runner(name, bentoml.models.get(tag)) for name, tag in tags.items()}
    old = {n: native.load_runner(n, bentoml.models.get(tags[n])) for n in ("return_lightgbm", "direction_lightgbm")}
    old["volatility_lightgbm"] = native.load_runner(
        "volatility_lightgbm", bentoml.models.get(tags["volatility_lightgbm"])
    )
    forest = served["return_random_forest"]
    sklearn_forest = forest.load_batch_model()
    regime = served["regime_hmm"]
    hmm = regime.model.hmm()
    names = list(DEFAULT_SPEC.names)

    def hmmlearn_regime(rows: np.ndarray) -> tuple[int, np.ndarray]:
        probabilities = hmm.predict_proba(regime.model.observations(rows, names))[-1]
        return int(np.argmax(probabilities)), probabilities

    bars = EmbeddedSource().fetch()
    history = {
        symbol: DEFAULT_SPEC.compute(
            Bars.from_frame(validate_ohlcv(group.drop(columns="symbol").reset_index(drop=True)))
        )
        for symbol, group in bars.groupby("symbol", sort=False)
    }
    sp500 = history["^GSPC"]
    row = sp500[-1:]
    window = sp500[-250:]  # the regime's context of a window of 501 bars or more
    stacked = np.concatenate([h[DEFAULT_SPEC.lookback :] for h in history.values()])
    many = np.resize(stacked, (BATCH_ROWS, stacked.shape[1]))
    expected_regime = regime.predict(window)[1]
    assert np.allclose(hmmlearn_regime(window)[1], expected_regime, atol=1e-10)
    assert np.array_equal(old["direction_lightgbm"].predict(row), served["direction_lightgbm"].predict(row))

    # batch inference's regime over every date: the filter for all at once, hmmlearn one context window at a time
    regime_filter = batch_scoring.RegimeFilter(regime.model)
    segments, contexts = [], []
    for features in history.values():
        observations, valid = regime_filter.observations(features[DEFAULT_SPEC.lookback :])
        n = observations.shape[0]
        segments.append((DEFAULT_SPEC.lookback, regime_filter.emissions(observations, valid), valid, n))
        contexts += [observations[max(0, t - 249) : t + 1][valid[max(0, t - 249) : t + 1]] for t in range(0, n, 25)]
    dates = sum(s[3] for s in segments)

    def hmmlearn_dates() -> None:
        for context in contexts:
            hmm.predict_proba(context)

    # batch jobs on the two indices: as shipped, with the ctypes boosters, with hmmlearn's filter per date
    source = work / "indices.parquet"
    bars[["symbol", "date", "open", "high", "low", "close", "volume"]].to_parquet(source, index=False)
    shipped = BatchModels.load(tags)
    native_models = BatchModels(
        return_lightgbm=old["return_lightgbm"],
        return_random_forest=shipped.return_random_forest,
        direction=old["direction_lightgbm"],
        volatility=old["volatility_lightgbm"],
        regime=shipped.regime,
    )
    scored = len(stacked)

    hmmlearn_filter = hmmlearn_regime_filter(batch_scoring.RegimeFilter)

    def job(models: Any, hmmlearn: bool = False) -> Callable[[], object]:
        def run() -> object:
            original = batch_scoring.RegimeFilter
            if hmmlearn:
                batch_scoring.RegimeFilter = hmmlearn_filter  # type: ignore[misc, assignment]
            try:
                return score_file(source, work / "scored.parquet", models=models)
            finally:
                batch_scoring.RegimeFilter = original  # type: ignore[misc]

        return run

    job(shipped)()
    with_filter = pd.read_parquet(work / "scored.parquet")
    job(shipped, hmmlearn=True)()
    with_hmmlearn = pd.read_parquet(work / "scored.parquet")
    probabilities = [c for c in with_filter.columns if c.startswith("regime_probability_")]
    assert np.allclose(with_filter[probabilities], with_hmmlearn[probabilities], atol=1e-9, equal_nan=True)

    calls = {
        "booster one row, ctypes": p50_ms(lambda: old["direction_lightgbm"].predict(row), 2000),
        "booster one row, lightgbm": p50_ms(lambda: served["direction_lightgbm"].predict(row), 2000),
        "forest one row, flat nodes": p50_ms(lambda: forest.predict(row), 1000),
        "forest one row, scikit-learn": p50_ms(lambda: sklearn_forest.predict(row), 20, warmup=3),
        "regime one window, numpy filter": p50_ms(lambda: regime.predict(window), 500),
        "regime one window, hmmlearn": p50_ms(lambda: hmmlearn_regime(window), 300),
        "booster many rows, ctypes": rows_per_second(lambda: old["return_lightgbm"].predict(many), BATCH_ROWS),
        "booster many rows, lightgbm": rows_per_second(lambda: served["return_lightgbm"].predict(many), BATCH_ROWS),
        "forest many rows, flat nodes": rows_per_second(lambda: forest.flat.predict(many[:10_000]), 10_000),
        "forest many rows, scikit-learn": rows_per_second(lambda: sklearn_forest.predict(many[:10_000]), 10_000),
        "regime every date, numpy filter": rows_per_second(lambda: regime_filter.posteriors(segments), dates),
        "regime every date, hmmlearn": rows_per_second(hmmlearn_dates, len(contexts)),
        "batch job, as shipped": rows_per_second(job(shipped), scored),
        "batch job, ctypes boosters": rows_per_second(job(native_models), scored),
    }
    results = interleaved(calls, ROUNDS)
    # hmmlearn's batch job takes ~1 ms a date: fewer rounds
    results.update(interleaved({"batch job, hmmlearn filter": rows_per_second(job(shipped, True), scored)}, 2))
    results["batch rows"] = [float(scored)]
    results["regime dates"] = [float(dates)]
    return results


def imports(rounds: int) -> dict[str, list[float]]:
    """What each library adds to a worker's start, in fresh interpreters, rounds taking turns."""
    cases = {
        "lightgbm": ("lightgbm", "numpy, pandas, bentoml"),
        "sklearn.ensemble": ("sklearn.ensemble", "numpy, pandas, bentoml"),
        "hmmlearn.hmm": ("hmmlearn.hmm", "numpy, pandas, bentoml"),
        "sklearn.ensemble after lightgbm": ("sklearn.ensemble", "numpy, pandas, bentoml, lightgbm"),
        "hmmlearn.hmm after lightgbm": ("hmmlearn.hmm", "numpy, pandas, bentoml, lightgbm"),
    }
    calls = {label: functools.partial(import_seconds, modules, after) for label, (modules, after) in cases.items()}
    return interleaved(calls, rounds)


def served(work: Path, native_file: Path) -> tuple[dict[str, list[float]], dict[str, tuple[float, float]]]:
    """Cold starts of the service as shipped and of each variant, then sequential p50s of the requests they serve."""
    from benchmarks import bench_service

    site = work / "variant-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = f"{site}{os.pathsep}{ROOT}"
    target = "bentos.service:MarketModels"
    servers = {
        "shipped": bench_service.Server(target),
        "native-booster": bench_service.Server(
            target, env={"PYTHONPATH": path, VARIANT: "native-booster", NATIVE_RUNNERS: str(native_file)}
        ),
        "sklearn-forest": bench_service.Server(target, env={"PYTHONPATH": path, VARIANT: "sklearn-forest"}),
        "hmmlearn-regime": bench_service.Server(target, env={"PYTHONPATH": path, VARIANT: "hmmlearn-regime"}),
    }
    cold: dict[str, list[float]] = {key: [] for key in servers}
    bars = window()
    body = json.dumps({"bars": bars}).encode()
    forest_body = json.dumps({"bars": bars, "model": "random_forest"}).encode()
    bench_service.SEQUENTIAL_REQUESTS = SEQUENTIAL_REQUESTS
    try:
        for attempt in range(COLD_STARTS):
            for key, server in servers.items():
                cold[key].append(server.start())
                print(f"cold start {key}: {server.startup_seconds:.2f} s", flush=True)
                if attempt < COLD_STARTS - 1:
                    server.stop()
        endpoint = bench_service.Endpoint
        shipped, native, forest, regime = servers.values()
        endpoints = [
            endpoint("predict_direction, shipped", shipped, "/predict_direction", body),
            endpoint("predict_direction, native-booster", native, "/predict_direction", body),
            endpoint("predict_return random_forest, shipped", shipped, "/predict_return", forest_body),
            endpoint("predict_return random_forest, sklearn-forest", forest, "/predict_return", forest_body),
            endpoint("detect_regime, shipped", shipped, "/detect_regime", body),
            endpoint("detect_regime, hmmlearn-regime", regime, "/detect_regime", body),
            endpoint("predict_all, shipped", shipped, "/predict_all", body),
            endpoint("predict_all, native-booster", native, "/predict_all", body),
            endpoint("predict_all, sklearn-forest", forest, "/predict_all", body),
            endpoint("predict_all, hmmlearn-regime", regime, "/predict_all", body),
        ]
        latency = {label: (p50, p99) for label, (p50, p99, _) in bench_service.sequential(endpoints).items()}
    finally:
        for server in servers.values():
            server.stop()
    return cold, latency


def window() -> dict[str, list[Any]]:
    """The last WINDOW_BARS bars of the S&P 500 as a request holds them: enough for the regime's full context."""
    from data.sources import EmbeddedSource

    frame = EmbeddedSource(symbols=("^GSPC",)).fetch().tail(WINDOW_BARS)
    return {
        "date": [str(d.date()) for d in frame["date"]],
        **{c: [float(x) for x in frame[c]] for c in ("open", "high", "low", "close", "volume")},
    }


def comparisons(rows: int, dates: int) -> list[tuple[str, str, str, str, str, str, str]]:
    """(path, key, what, hand-written sample, library sample, unit, target) of every comparison in the report."""
    felt = GAIN_TARGET
    return [
        ("booster", "one_row", "one row in process (direction model)", "booster one row, ctypes",
         "booster one row, lightgbm", "ms", "-"),
        ("booster", "many_rows", f"{BATCH_ROWS:,} rows in process", "booster many rows, ctypes",
         "booster many rows, lightgbm", "rows/s", "-"),
        ("booster", "batch_job", f"batch job ({rows:,} rows scored)", "batch job, ctypes boosters",
         "batch job, as shipped", "rows/s", felt),
        ("booster", "predict_direction", "predict_direction over HTTP (p50)", "predict_direction, native-booster",
         "predict_direction, shipped", "ms", felt),
        ("booster", "predict_all", "predict_all over HTTP (p50)", "predict_all, native-booster",
         "predict_all, shipped", "ms", felt),
        ("booster", "cold_start", "cold start, launch to /readyz", "cold start, native-booster",
         "cold start, shipped", "s", felt),
        ("forest", "one_row", "one row in process", "forest one row, flat nodes",
         "forest one row, scikit-learn", "ms", "-"),
        ("forest", "many_rows", "10,000 rows in process (batches over 64 rows go to scikit-learn)",
         "forest many rows, flat nodes", "forest many rows, scikit-learn", "rows/s", "-"),
        ("forest", "predict_return", "predict_return random_forest over HTTP (p50)",
         "predict_return random_forest, shipped", "predict_return random_forest, sklearn-forest", "ms", felt),
        ("forest", "predict_all", "predict_all over HTTP (p50)", "predict_all, shipped",
         "predict_all, sklearn-forest", "ms", felt),
        ("forest", "cold_start", "cold start, launch to /readyz", "cold start, shipped",
         "cold start, sklearn-forest", "s", felt),
        ("regime", "one_window", "one 250-row window in process", "regime one window, numpy filter",
         "regime one window, hmmlearn", "ms", "-"),
        ("regime", "every_date", f"every date of both indices in process ({dates:,})",
         "regime every date, numpy filter", "regime every date, hmmlearn", "rows/s", "-"),
        ("regime", "batch_job", f"batch job ({rows:,} rows scored)", "batch job, as shipped",
         "batch job, hmmlearn filter", "rows/s", felt),
        ("regime", "detect_regime", "detect_regime over HTTP (p50)", "detect_regime, shipped",
         "detect_regime, hmmlearn-regime", "ms", felt),
        ("regime", "predict_all", "predict_all over HTTP (p50)", "predict_all, shipped",
         "predict_all, hmmlearn-regime", "ms", felt),
        ("regime", "cold_start", "cold start, launch to /readyz", "cold start, shipped",
         "cold start, hmmlearn-regime", "s", felt),
    ]  # fmt: skip


# the report ---------------------------------------------------------------------------------------------------------
def main() -> None:
    keep = os.environ.get("MLOPS_BENCH_HOME")
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="mlops-bench-paths-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MLOPS_BENCH_HOME"] = str(work)  # bench_service (imported below) keeps its store here too
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    os.environ["MLOPS_HOME"] = str(work / "home")
    os.environ["MLOPS_PRODUCTION_FILE"] = str(work / "production.json")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    from benchmarks._report import Figure, write_results

    load_before = os.getloadavg()
    tags = production_size_models(work, work / "production.json")
    native_file = work / "native_runners.py"
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{NATIVE_REF}:bentos/runners.py"], capture_output=True, check=True
    )
    native_file.write_bytes(source.stdout)
    native = native_runners(native_file)
    print("in process ...", flush=True)
    measured = in_process(tags, native, work)
    print("imports ...", flush=True)
    imported = imports(ROUNDS)
    print("served ...", flush=True)
    cold, latency = served(work, native_file)
    load_after = os.getloadavg()

    rows, dates = int(measured.pop("batch rows")[0]), int(measured.pop("regime dates")[0])
    samples = {**measured, **{f"cold start, {key}": values for key, values in cold.items()}}
    samples.update({label: [p50] for label, (p50, _) in latency.items()})
    figures: list[Figure] = []
    for path, key, what, hand, library, unit, target in comparisons(rows, dates):
        medians = {}
        for label in (hand, library):
            values = samples[label]
            medians[label] = statistics.median(values)
            if label in latency:
                shown = f"{latency[label][0]:.2f} ms (p99 {latency[label][1]:.2f} ms)"
            else:
                digits = {"ms": 3, "s": 2}.get(unit, 0)
                rounds = ", ".join(f"{v:,.{digits}f}" for v in values)
                shown = f"{medians[label]:,.{digits}f} {unit}" + (f" (rounds: {rounds})" if len(values) > 1 else "")
            figures.append(Figure(f"{path}, {what}: {label.split(', ')[-1]}", shown, medians[label], unit))
        gain = medians[hand] / medians[library] if unit == "rows/s" else medians[library] / medians[hand]
        figures.append(
            Figure(f"{path}, {what}: gain of the hand-written path", f"{gain:.2f}x", gain, "x", target, f"{path}.{key}")
        )
    for label, values in imported.items():
        module, _, after = label.partition(" after ")
        what = f"import {module} after numpy, pandas, bentoml{', ' + after if after else ''} (-X importtime)"
        value = statistics.median(values)
        figures.append(Figure(what, f"{value:.2f} s ({', '.join(f'{v:.2f}' for v in values)})", value, "s"))
    for path in ("booster", "forest", "regime"):
        felt = [f for f in figures if f.key and f.key.startswith(path + ".") and f.target != "-"]
        met = [f.key for f in felt if (f.value or 0.0) >= 2.0]
        verdict = (
            f"keep ({', '.join(str(k) for k in met)} at least 2x)"
            if met
            else "remove (no figure a user feels gains 2x)"
        )
        figures.append(Figure(f"decision, {path} path, from its gains on figures a user feels", verdict))

    notes = " ".join(
        [
            f"In process: medians over {ROUNDS} interleaved rounds (a round's p50 of many calls, or one timed pass",
            "for throughputs); hmmlearn's batch job 2 rounds (~1 ms a date). One row: the S&P 500's last feature row",
            "through the direction model's runner (booster and calibration) and through the forest; one window: the",
            f"regime runner on the last 250 feature rows. Many rows: {BATCH_ROWS:,} feature rows (both indices' rows",
            "repeated). Every date: the batch filter over every date of both indices with the service's 250-row",
            "context; hmmlearn: predict_proba of the context window of every 25th date. Batch job: `score_file` on a",
            "Parquet file of both indices (features, validation, five models, I/O), as shipped, with the ctypes",
            "boosters, and with a regime filter calling hmmlearn once a date (its answers equal the shipped filter's",
            f"within 1e-9, checked). Served: `bentoml serve` of bentos.service, {COLD_STARTS} launches each, variants",
            f"taking turns; then {SEQUENTIAL_REQUESTS} sequential requests per endpoint after a warm-up, endpoints",
            f"taking turns request by request (benchmarks/bench_service.py), a window of {WINDOW_BARS} S&P 500 bars.",
            "Variants swap one runner: `native-booster` the boosters of bentos/runners.py as of",
            f"{NATIVE_REF} (ctypes, no lightgbm package), `sklearn-forest` scikit-learn's forest for every row,",
            "`hmmlearn-regime` hmmlearn's predict_proba. The shipped service imports lightgbm (and with it",
            "scikit-learn and scipy.stats), so the forest and the regime filter no longer spare those imports: their",
            "cold-start gains are what sklearn.ensemble and hmmlearn add after lightgbm. A gain is the library's time",
            "over the hand-written path's (or the hand-written path's throughput over the library's); the 2x target",
            "applies to the figures a user feels (requests over HTTP, cold start, a batch job). Load average (1 min)",
            f"{load_before[0]:.1f} before, {load_after[0]:.1f} after, on a shared 2-core VM.",
        ]
    )
    recorded = write_results("serving_paths", ".venv/bin/python benchmarks/bench_serving_paths.py", figures, notes)
    print(recorded.read_text())
    if not keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
