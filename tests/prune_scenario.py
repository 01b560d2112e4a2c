"""A model store of several nights of retrains, for tests/test_prune.py, run in a subprocess with its own BENTOML_HOME.

``populate CARDS NIGHTS`` saves, each night, a new version of each of the six models (a 100 kB file and the card of a
real quick-trained model of that name), promotes them, and builds a real Bento every second night; it prints what it
made as JSON. ``prune KEEP [PAUSE]`` runs the prune, sleeping after the first removal when PAUSE is given (for a
kill); ``state`` prints what the store and the registry hold.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import bentoml

from deploy.bento import build, build_context
from features.catalog import MODEL_NAMES
from training.registry import prune as pruning
from training.registry.promotion import Registry


def populate(cards: dict[str, dict], nights: int) -> dict:  # type: ignore[type-arg]
    registry = Registry()
    made: dict[str, list] = {"models": [], "bentos": []}  # type: ignore[type-arg]
    for night in range(1, nights + 1):
        tags = []
        for name in MODEL_NAMES:
            with bentoml.models.create(
                name, module="tests.prune", labels={"stage": "candidate"}, metadata=cards[name]
            ) as m:
                (Path(m.path) / "weights.bin").write_bytes(bytes(100_000))
            tags.append(str(m.tag))
            time.sleep(0.01)  # creation times strictly increase
        registry.promote(tags, reason=f"night {night}")
        made["models"].append(tags)
        if night % 2 == 0:
            with tempfile.TemporaryDirectory() as work:
                made["bentos"].append(build(registry.production(), build_context(Path(work) / "context")))
            time.sleep(1.1)  # Bento creation times strictly increase
    return made


def state() -> dict:  # type: ignore[type-arg]
    models = {}
    for name in MODEL_NAMES:
        for model in bentoml.models.list(name):
            assert (Path(model.path) / "weights.bin").stat().st_size == 100_000, model.tag  # whole
            models[str(model.tag)] = model.info.metadata["task"]
    bentos = {str(b.tag): [str(m.tag) for m in b.info.models] for b in bentoml.bentos.list()}
    registry = Registry()
    return {"models": sorted(models), "bentos": bentos, "registry": registry.state()["models"]}


def main() -> None:
    command = sys.argv[1]
    if command == "populate":
        print(json.dumps(populate(json.loads(Path(sys.argv[2]).read_text()), int(sys.argv[3]))))
    elif command == "prune":
        if len(sys.argv) > 3:
            original = pruning.remove

            def remove_then_pause(removal: pruning.Removal, home: Path | None = None) -> None:
                original(removal, home)
                print("removed one", flush=True)
                time.sleep(600)

            pruning.remove = remove_then_pause
        done = pruning.prune(int(sys.argv[2]))
        print(json.dumps({"removed": [r.tag for r in done.remove], "bytes": done.bytes, "trim": done.rollback_trim}))
    elif command == "state":
        print(json.dumps(state()))


if __name__ == "__main__":
    main()
