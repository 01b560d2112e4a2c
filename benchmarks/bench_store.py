"""Benchmark of the model store's size over nightly retrains of a universe, with and without pruning (issue 14).

Thirty nights, each saving a new version of each of the six models, promoting them and building a real Bento of them,
as the retrain flow does; once without pruning and once with ``prune(keep=3)`` after every night. The tabular and
regime models are the quick models trained on the embedded data, saved again each night under a new version; the
``price_prophet`` version holds ``MLOPS_STORE_SYMBOLS`` (200) symbols' Prophet files, each a copy of a real Prophet
model fitted on 15 years of synthetic bars (its size is what matters here: the figure says it). Run:
``.venv/bin/python benchmarks/bench_store.py``; it uses a temporary store, never the user's.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORK = Path(tempfile.mkdtemp(prefix="mlops-bench-store-"))
os.environ["BENTOML_HOME"] = str(WORK / "bentoml")
os.environ["MLOPS_HOME"] = str(WORK / "home")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bentoml  # noqa: E402

from benchmarks._report import Figure, write_results  # noqa: E402
from bentos.prophet_intervals import ConformalInterval  # noqa: E402
from bentos.prophet_model import ProphetModels, SymbolEntry, anchor_from_recent  # noqa: E402
from data.pull import pull  # noqa: E402
from data.snapshots import SnapshotStore  # noqa: E402
from data.sources import EmbeddedSource  # noqa: E402
from data.synthetic import SyntheticSource  # noqa: E402
from deploy.bento import build, build_context  # noqa: E402
from training.config import TrainingConfig  # noqa: E402
from training.models.price_prophet import PriceProphet  # noqa: E402
from training.registry.promotion import Registry  # noqa: E402
from training.registry.prune import folder_bytes, prune  # noqa: E402
from training.run import train  # noqa: E402

NIGHTS = int(os.environ.get("MLOPS_STORE_NIGHTS", "30"))
SYMBOLS = int(os.environ.get("MLOPS_STORE_SYMBOLS", "200"))
KEEP = 3


def universe_prophet(directory: Path) -> int:
    """A ``price_prophet`` directory of SYMBOLS symbols, each a copy of one real 15-year fit; its file's bytes."""
    bars = SyntheticSource(symbols=1, years=15, seed=0).fetch()
    model = PriceProphet(TrainingConfig()).fit_symbol(bars)
    anchor = anchor_from_recent(bars["date"], bars["close"], bars["volume"])
    entry = SymbolEntry(
        str(anchor.date.date()), anchor.close, anchor.log_volume, "2010-01-04", "2024-12-31", len(bars), anchor.variance
    )
    symbols = [f"SYN{i:04d}" for i in range(1, SYMBOLS + 1)]
    intervals = ConformalInterval(0.8, -1.3, 1.2, 100)  # the stored bytes do not depend on the calibration
    ProphetModels(dict.fromkeys(symbols, model), dict.fromkeys(symbols, entry), intervals).save(directory)
    return (directory / "prophet_0.json").stat().st_size


@dataclass(frozen=True)
class Template:
    """A trained model's store entry, its files copied out of the store (which the prunes empty)."""

    name: str
    module: str
    labels: dict[str, str]
    metadata: dict[str, Any]
    options: Any
    files: Path

    @classmethod
    def of(cls, tag: str, directory: Path) -> Template:
        model = bentoml.models.get(tag)
        files = directory / model.tag.name
        shutil.copytree(model.path, files)
        return cls(model.tag.name, model.info.module, dict(model.info.labels), dict(model.info.metadata),
                   model.info.options, files)  # fmt: skip


def new_version(template: Template, prophet_dir: Path) -> str:
    """``template`` saved again under a new version (a nightly retrain's output of that model)."""
    with bentoml.models.create(
        template.name, module=template.module, labels=template.labels, metadata=template.metadata,
        options=template.options,
    ) as model:  # fmt: skip
        source = prophet_dir if template.name == "price_prophet" else template.files
        for item in source.iterdir():
            if item.name not in ("model.yaml",) and not item.name.startswith("."):
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, Path(model.path) / item.name)
    return str(model.tag)


def nights(templates: list[Template], prophet_dir: Path, keep: int | None) -> tuple[int, float]:
    """Run the nights; return the store's bytes at the end and the seconds the prunes took."""
    registry = Registry()
    pruning = 0.0
    for night in range(NIGHTS):
        tags = [new_version(t, prophet_dir) for t in templates]
        registry.promote(tags, reason=f"night {night}")
        with tempfile.TemporaryDirectory() as work:
            build(registry.production(), build_context(Path(work) / "context"))
        if keep is not None:
            started = time.perf_counter()
            prune(keep, registry)
            pruning += time.perf_counter() - started
        print(f"night {night + 1}: {store_bytes() / 1e6:.0f} MB", flush=True)
    return store_bytes(), pruning / NIGHTS


def store_bytes() -> int:
    home = Path(os.environ["BENTOML_HOME"])
    return folder_bytes(home / "models") + folder_bytes(home / "bentos")


def reset_store() -> None:
    home = Path(os.environ["BENTOML_HOME"])
    for part in ("models", "bentos", "mlops"):
        shutil.rmtree(home / part, ignore_errors=True)


def main() -> None:
    store = SnapshotStore(WORK / "snapshots")
    info, _ = pull(EmbeddedSource(), store)
    run = train(info.id, config=TrainingConfig.quick(), store=store, reports_root=WORK / "reports")
    assert run.ok, run.failures
    prophet_dir = WORK / "prophet"
    prophet_dir.mkdir()
    per_symbol = universe_prophet(prophet_dir)
    templates = [Template.of(result.tag, WORK / "templates") for result in run.results]
    variants: dict[str, tuple[int, float]] = {}
    for label, keep in (("without pruning", None), (f"with prune --keep {KEEP} each night", KEEP)):
        reset_store()
        variants[label] = nights(templates, prophet_dir, keep)
    (without, _), (pruned, prune_seconds) = variants.values()
    figures = [
        Figure(
            "one symbol's Prophet model (15 years of daily bars), stored",
            f"{per_symbol / 1e6:.2f} MB",
            round(per_symbol / 1e6, 2),
            "MB",
            key="prophet_symbol",
        ),
        Figure(f"model store after {NIGHTS} nightly retrains of {SYMBOLS} symbols, no pruning",
               f"{without / 1e9:.2f} GB", round(without / 1e9, 2), "GB", key="unpruned"),
        Figure(f"same, with prune --keep {KEEP} after each night", f"{pruned / 1e9:.2f} GB", round(pruned / 1e9, 2),
               "GB", key="pruned"),
        Figure("one prune (mean of the nights)", f"{prune_seconds:.1f} s", round(prune_seconds, 1), "s",
               key="prune_seconds"),
    ]  # fmt: skip
    notes = (
        f"Each night saves six model versions (the price model holding {SYMBOLS} symbols' Prophet files, copies of "
        "one real fit) and builds a real Bento of them, which copies the models it ships. Pruning keeps the newest "
        f"{KEEP} versions and Bentos, production, its {KEEP} most recent rollback targets and what kept Bentos ship."
    )
    print(write_results("scale_store", ".venv/bin/python benchmarks/bench_store.py", figures, notes))


if __name__ == "__main__":
    main()
