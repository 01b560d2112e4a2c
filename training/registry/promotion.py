"""Which version of each model is in production: an explicit, recorded decision with one-command rollback.

The registry lives beside the BentoML store (``$BENTOML_HOME/mlops/production.json``) with an append-only
``history.jsonl``. Each model keeps a stack of its earlier production versions, so ``rollback`` restores the
one before, again and again. Writes take a file lock and replace the file atomically, so two promotions
never interleave and a crash never leaves a half-written registry.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from bentos.production import registry_root, registry_state_path
from features import DEFAULT_SPEC
from training.registry.card import IncompleteCardError
from training.registry.store import MODEL_NAMES, Stage, get_model, set_stage


class PromotionError(RuntimeError):
    """A promotion or rollback was refused; nothing was changed."""


class RegistryBusyError(PromotionError):
    """Another process holds the registry lock."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_holder(descriptor: int) -> None:
    """filelock's ``on_acquired`` hook: say in the lock file who holds it, through the descriptor it has locked."""
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"pid {os.getpid()} since {_now()}".encode(), 0)


class Registry:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else registry_root()
        self.state_path = registry_state_path(self.root)
        self.history_path = self.root / "history.jsonl"
        self.lock_path = self.root / "registry.lock"

    # reading -------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {"models": {}, "updated_at": None}
        return dict(json.loads(self.state_path.read_text()))

    def production(self) -> dict[str, str]:
        """Model name -> production tag (``name:version``)."""
        return {name: entry["tag"] for name, entry in self.state()["models"].items()}

    def history(self) -> list[dict[str, Any]]:
        if not self.history_path.exists():
            return []
        return [json.loads(line) for line in self.history_path.read_text().splitlines() if line.strip()]

    # writing -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, timeout: float = 30.0) -> Iterator[None]:
        """Hold the registry lock; wait up to ``timeout`` seconds for another holder, then say who holds it.

        ``filelock``'s lock (``flock`` on Unix, released by the kernel when its holder dies); the holder writes
        ``pid <pid> since <time>`` into the lock file, which a process that waits in vain names.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_path, on_acquired=_write_holder)
        try:
            lock.acquire(timeout=timeout, poll_interval=0.1)
        except Timeout:
            try:
                holder = self.lock_path.read_text().strip() or "another process"
            except OSError:
                holder = "another process"
            raise RegistryBusyError(
                f"the model registry is locked by {holder}; gave up after {timeout:.0f} s"
            ) from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.truncate(self.lock_path, 0)  # still held: nobody reads a stale holder
            lock.release()

    def _write_state(self, state: dict[str, Any], event: dict[str, Any]) -> None:
        state["updated_at"] = event["at"]
        fd, temp = tempfile.mkstemp(dir=self.root, prefix=".production-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.state_path)
        with open(self.history_path, "a") as history:
            history.write(json.dumps(event, sort_keys=True) + "\n")
            history.flush()
            os.fsync(history.fileno())

    def check_promotable(self, tag: str) -> str:
        """The full tag of a model that may go to production, or :class:`PromotionError` saying why not."""
        try:
            model = get_model(tag)
        except LookupError as error:
            raise PromotionError(str(error)) from error
        if model.name not in MODEL_NAMES:
            raise PromotionError(f"{model.tag} is not one of the served models ({', '.join(MODEL_NAMES)})")
        try:
            card = model.card
        except IncompleteCardError as error:
            raise PromotionError(f"{model.tag} cannot be promoted: {error}") from error
        if card.feature_spec_hash != DEFAULT_SPEC.version_hash:
            raise PromotionError(
                f"{model.tag} cannot be promoted: it was trained with FeatureSpec {card.feature_spec_hash}, "
                f"the code computes {DEFAULT_SPEC.version_hash}. Retrain it with `mlops train`."
            )
        return model.tag

    def promote(self, tags: list[str], reason: str = "manual", timeout: float = 30.0) -> dict[str, str]:
        """Make ``tags`` the production versions of their models, all or none; return name -> new tag."""
        with self.lock(timeout):
            full_tags = [self.check_promotable(tag) for tag in tags]
            names = [t.split(":")[0] for t in full_tags]
            if len(set(names)) != len(names):
                raise PromotionError(f"one version per model at a time, got {', '.join(full_tags)}")
            state = self.state()
            event: dict[str, Any] = {"at": _now(), "action": "promote", "reason": reason, "changes": {}}
            for name, tag in zip(names, full_tags, strict=True):
                entry = state["models"].get(name)
                if entry and entry["tag"] == tag:
                    continue
                previous = [entry["tag"], *entry["previous"]] if entry else []
                state["models"][name] = {"tag": tag, "previous": previous, "since": event["at"], "reason": reason}
                event["changes"][name] = {"from": entry["tag"] if entry else None, "to": tag}
            if event["changes"]:
                self._write_state(state, event)
                self._relabel(event["changes"])
            return {name: change["to"] for name, change in event["changes"].items()}

    def rollback(
        self, names: list[str] | None = None, reason: str = "manual rollback", timeout: float = 30.0
    ) -> dict[str, str]:
        """Put back the previous production version of ``names`` (all models with one by default)."""
        with self.lock(timeout):
            state = self.state()
            chosen = names or [n for n, e in state["models"].items() if e["previous"]]
            event: dict[str, Any] = {"at": _now(), "action": "rollback", "reason": reason, "changes": {}}
            for name in chosen:
                entry = state["models"].get(name)
                if not entry:
                    raise PromotionError(f"{name} has no production version to roll back")
                if not entry["previous"]:
                    raise PromotionError(f"{name} has no earlier production version than {entry['tag']}")
                restored, *older = entry["previous"]
                state["models"][name] = {"tag": restored, "previous": older, "since": event["at"], "reason": reason}
                event["changes"][name] = {"from": entry["tag"], "to": restored}
            if not event["changes"]:
                raise PromotionError("nothing to roll back: no model has an earlier production version")
            self._write_state(state, event)
            self._relabel(event["changes"])
            return {name: change["to"] for name, change in event["changes"].items()}

    def trim_rollbacks(self, depth: int, reason: str, locked: bool = False) -> dict[str, list[str]]:
        """Keep only the ``depth`` most recent rollback targets of each model (a ``prune`` event); return what went.

        ``locked``: the caller holds the registry lock already (``training/registry/prune.py``)."""
        with contextlib.nullcontext() if locked else self.lock():
            state = self.state()
            dropped = {n: e["previous"][depth:] for n, e in state["models"].items() if e["previous"][depth:]}
            if dropped:
                for name in dropped:
                    state["models"][name]["previous"] = state["models"][name]["previous"][:depth]
                event = {"at": _now(), "action": "prune", "reason": reason, "dropped_rollbacks": dropped}
                self._write_state(state, event)
            return dropped

    def _relabel(self, changes: dict[str, dict[str, str | None]]) -> None:
        for change in changes.values():
            if change["from"]:
                set_stage(str(change["from"]), Stage.RETIRED)
            set_stage(str(change["to"]), Stage.PRODUCTION)
