"""Keep the model store in bounds: remove old model versions and Bentos, never one that is still needed.

Nightly retrains of a universe add a ``price_prophet`` version holding every symbol's model, and every Bento copies
the models it ships: hundreds of MB a night for 500 symbols. ``prune(keep=N)`` keeps, and removes everything else:

- the newest N Bentos of each Bento name (by creation time), and every model version a kept Bento ships;
- for each of the six models, the newest N versions, the production version and its N most recent rollback targets
  (the registry's stack of earlier production versions is trimmed to N, in one recorded ``prune`` event, so a
  rollback never names a removed version).

A removal is a rename out of the store (into ``$BENTOML_HOME/.mlops-trash``, the same file system, so one atomic
step) followed by deleting the renamed folder: a prune killed midway leaves every listed model and Bento whole, and
the next prune empties the trash first. Bentos go before models, so a model is never removed while a kept Bento
still lists it. ``keep`` is at least 1: the newest version of each name stays, and so does BentoML's ``latest``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bentoml
from bentoml.exceptions import NotFound

from features.catalog import MODEL_NAMES
from training.registry.promotion import Registry
from training.registry.store import bentoml_home

TRASH = ".mlops-trash"


@dataclass
class Removal:
    kind: str  # "bento" or "model"
    tag: str
    path: Path
    bytes: int


@dataclass
class PrunePlan:
    keep: int
    remove: list[Removal] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # tag -> why it stays
    rollback_trim: dict[str, list[str]] = field(default_factory=dict)  # model -> rollback targets dropped

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.remove)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def plan(keep: int, registry: Registry | None = None) -> PrunePlan:
    """What ``prune(keep)`` would remove and why everything else stays; changes nothing."""
    if keep < 1:
        raise ValueError(f"--keep must be at least 1 (the newest version of each model stays), not {keep}")
    registry = registry or Registry()
    result = PrunePlan(keep)
    shipped: set[str] = set()
    by_name: dict[str, list[bentoml.Bento]] = {}
    for bento in bentoml.bentos.list():
        by_name.setdefault(bento.tag.name, []).append(bento)
    for bentos in by_name.values():
        bentos.sort(key=lambda b: b.creation_time, reverse=True)
        for bento in bentos[:keep]:
            result.kept[str(bento.tag)] = f"one of the newest {keep} Bentos"
            shipped |= {str(m.tag) for m in bento.info.models}
        for bento in bentos[keep:]:
            result.remove.append(Removal("bento", str(bento.tag), Path(bento.path), folder_bytes(Path(bento.path))))
    state = registry.state()["models"]
    protected: dict[str, str] = {}
    for name, entry in state.items():
        protected[entry["tag"]] = "production"
        for tag in entry["previous"][:keep]:
            protected.setdefault(tag, "a rollback target")
        if entry["previous"][keep:]:
            result.rollback_trim[name] = list(entry["previous"][keep:])
    for tag in shipped:
        protected.setdefault(tag, "shipped by a kept Bento")
    for name in MODEL_NAMES:
        try:
            versions = sorted(bentoml.models.list(name), key=lambda m: m.creation_time, reverse=True)
        except NotFound:
            continue
        for i, model in enumerate(versions):
            tag = str(model.tag)
            if i < keep:
                result.kept[tag] = f"one of the newest {keep} versions"
            elif tag in protected:
                result.kept[tag] = protected[tag]
            else:
                result.remove.append(Removal("model", tag, Path(model.path), folder_bytes(Path(model.path))))
    return result


def empty_trash(home: Path | None = None) -> int:
    """Delete what an interrupted prune moved out of the store; return the bytes freed."""
    trash = (home or bentoml_home()) / TRASH
    freed = 0
    if trash.exists():
        for folder in trash.iterdir():
            freed += folder_bytes(folder)
            shutil.rmtree(folder, ignore_errors=True)
    return freed


def remove(removal: Removal, home: Path | None = None) -> None:
    """Move one version out of the store in one rename, then delete it."""
    trash = (home or bentoml_home()) / TRASH
    trash.mkdir(exist_ok=True)
    target = trash / f"{removal.kind}-{removal.tag.replace(':', '-')}-{uuid.uuid4().hex[:8]}"
    os.rename(removal.path, target)
    shutil.rmtree(target)


def prune(
    keep: int,
    registry: Registry | None = None,
    dry_run: bool = False,
    on_removed: Callable[[Removal], None] | None = None,
) -> PrunePlan:
    """Remove what :func:`plan` lists (Bentos first), trim the rollback stacks; return the plan carried out."""
    registry = registry or Registry()
    with registry.lock():  # no promotion or rollback changes what is protected while this runs
        empty_trash()
        chosen = plan(keep, registry)
        if dry_run:
            return chosen
        if chosen.rollback_trim:
            registry.trim_rollbacks(keep, reason=f"prune --keep {keep}", locked=True)
        for removal in sorted(chosen.remove, key=lambda r: r.kind != "bento"):
            remove(removal)
            if on_removed is not None:
                on_removed(removal)
    return chosen
