"""Benchmark of the OCI image (issue 6): size, build time on a cached base, time from start to /readyz.

Quick-trains the six models on the embedded data into a temporary BentoML store, builds two Bentos of them and
containerizes with the backend `mlops image` would choose (here: buildah, no Docker engine). Figures: the Debian base
image build (only when it is not cached yet, or with ``MLOPS_BENCH_REBUILD_BASE=1``); the image build on the cached
base without layer cache; the build of a second Bento of the same packages with the layer cache of the first; the
image size against BentoML's default image (1.51 GB); start to /readyz of the image's entrypoint
(``MLOPS_BENCH_ROUNDS`` starts, default 3) beside `bentoml serve` of the same Bento on the host. Uses the host CA
bundle for build steps when the environment names one (SSL_CERT_FILE / PIP_CERT). Run:
``.venv/bin/python benchmarks/bench_image.py`` (about 10 minutes with a cached base).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="mlops-bench-image-"))
os.environ["BENTOML_HOME"] = str(WORK / "bentoml")
os.environ["MLOPS_HOME"] = str(WORK / "home")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import Figure, write_results  # noqa: E402
from cli.demo import wait_ready  # noqa: E402
from data.pull import pull  # noqa: E402
from data.settings import DataSettings  # noqa: E402
from data.snapshots import SnapshotStore  # noqa: E402
from data.sources import EmbeddedSource  # noqa: E402
from deploy.base_image import host_recipe  # noqa: E402
from deploy.bento import build, build_context  # noqa: E402
from deploy.image import (  # noqa: E402
    DEFAULT_IMAGE_BYTES,
    ImageResult,
    ImageSettings,
    backend_from,
    choose_base,
    containerize,
    descendants,
    run_image,
    smoke_test_image,
)
from deploy.smoke import call_every_method, free_port, smoke_test  # noqa: E402
from deploy.worker_image import build_worker_image  # noqa: E402
from training.config import TrainingConfig  # noqa: E402
from training.registry.promotion import Registry  # noqa: E402
from training.run import train  # noqa: E402

ROUNDS = int(os.environ.get("MLOPS_BENCH_ROUNDS", "3"))


def ca_bundle() -> Path | None:
    named = [os.environ.get(n, "") for n in ("MLOPS_IMAGE_CA_BUNDLE", "SSL_CERT_FILE", "PIP_CERT")]
    return next((Path(p) for p in named if p and Path(p).is_file()), None)


def fresh_bento(production: dict[str, str], name: str) -> str:
    (WORK / name).mkdir()
    return build(production, build_context(WORK / name))


def served_memory_mb(pid: int) -> float:
    """Resident memory of the image's server and workers (the processes of its /app/.venv) below ``pid``."""
    total_kb = 0
    for child in descendants(pid):
        try:
            if not Path(f"/proc/{child}/cmdline").read_text().startswith("/app/.venv/"):
                continue
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        total_kb += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return total_kb / 1024


def start_to_ready(image: str, production: dict[str, str], settings: ImageSettings) -> tuple[float, float | None, dict]:
    """Seconds from starting the image's entrypoint to /readyz; its memory and method latencies after one call each."""
    backend = backend_from(settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    with run_image(backend, image, port, WORK / "serve.log") as process:
        wait_ready(url, process, 600)
        ready = time.perf_counter() - started
        timings = call_every_method(url, production)
        memory = round(served_memory_mb(process.pid)) if backend.name == "buildah" else None
    return round(ready, 1), memory, timings


def main() -> None:
    load_start = os.getloadavg()[0]
    store = SnapshotStore(DataSettings().snapshots)
    info, _ = pull(EmbeddedSource(), store)
    run = train(info.id, config=TrainingConfig.quick(), store=store, reports_root=WORK / "reports")
    assert run.ok, run.failures
    registry = Registry()
    registry.promote([r.tag for r in run.results], reason="benchmark")
    production = registry.production()
    first, second = fresh_bento(production, "context-1"), fresh_bento(production, "context-2")

    settings = ImageSettings(ca_bundle=ca_bundle())
    backend = backend_from(settings)
    recipe = host_recipe(settings.debian_suite, settings.debian_mirror)
    rebuild = os.environ.get("MLOPS_BENCH_REBUILD_BASE") == "1" or not backend.image_exists(recipe.image)
    started = time.perf_counter()
    base, _ = choose_base(backend, "python:3.11-slim", settings.model_copy(update={"refresh_base": rebuild}), print)
    base_seconds = time.perf_counter() - started
    base_build = Figure("base image build", "cached (not measured)")
    if rebuild:
        base_build = Figure(
            "base image build", f"{base_seconds:.0f} s (debootstrap + updates + import)", round(base_seconds), "s"
        )

    cold = containerize(first, settings.model_copy(update={"layers": False}), print)
    containerize(first, settings, print)  # fills the layer cache
    warm = containerize(second, settings, print)
    print(cold, warm, sep="\n", flush=True)

    smoke_test_image(warm.image, production, timeout=600, settings=settings)  # every method answers correctly
    starts = [start_to_ready(warm.image, production, settings) for _ in range(ROUNDS)]
    print(starts, flush=True)
    readiness, memory, timings = [s[0] for s in starts], starts[-1][1], starts[-1][2]
    host = smoke_test(second, production, timeout=300)
    for result in (cold, warm):
        backend.remove_image(result.image)
    worker = build_worker_image(settings, print)  # the universe's Dask scheduler and workers (deploy/k8s/dask/)
    backend.remove_image(worker.image)

    results = figures(cold, warm, base, base_build, readiness, host["ready_seconds"], backend.size_bytes(base))
    worker_size = round(worker.size_bytes / 1e6)
    results.append(
        Figure(
            "worker image size (Dask scheduler and workers: the whole project, training included)",
            f"{worker_size} MB (built in {worker.build_seconds:.0f} s)",
            worker_size,
            "MB",
            key="worker_size",
        )
    )
    results.append(
        Figure(
            "resident memory of the served image after calling every method",
            "not measured" if memory is None else f"{memory} MB",
            memory,
            "MB",
            "< 1 GiB (k8s request)",
            "memory",
        )
    )
    notes = (
        f"Backend {cold.backend}, base {base}. The cold build downloads the {cold.bento.split(':')[0]} packages from "
        "PyPI unless BuildKit-style cache mounts kept them from an earlier build (they do here): it is dominated "
        "by installing and byte-compiling them. The image runs as user bentoml (1034) and has no compilers or git; "
        "test suites shipped inside wheels are removed in the install step.\n\n"
        f"Method latencies inside the image, last start (ms): {timings}.\n\n"
        f"Load average (1 min) at the start and the end: {load_start:.1f} and {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores: figures taken on a shared machine stretch with it."
    )
    print(write_results("image", ".venv/bin/python benchmarks/bench_image.py", results, notes))


def figures(
    cold: ImageResult,
    warm: ImageResult,
    base: str,
    base_build: Figure,
    readiness: list[float],
    host_ready: float,
    base_bytes: int,
) -> list[Figure]:
    ready = round(statistics.median(readiness), 1)
    size, base_size = round(cold.size_bytes / 1e6), round(base_bytes / 1e6)
    share = round(100 * cold.size_bytes / DEFAULT_IMAGE_BYTES)
    return [
        Figure("image size (uncompressed, sum of layers)", f"{size} MB", size, "MB", "< 900 MB", "size"),
        Figure(
            f"image size / BentoML's default image ({DEFAULT_IMAGE_BYTES / 1e9:.2f} GB with build-essential and git)",
            f"{share}%",
            share,
            "%",
            key="size_share",
        ),
        Figure("base image size", f"{base_size} MB ({base.split('/')[-1]})", base_size, "MB", key="base_size"),
        base_build,
        Figure(
            "build with a cached base, no layer cache",
            f"{cold.build_seconds:.0f} s",
            round(cold.build_seconds),
            "s",
            key="cold_build",
        ),
        Figure(
            "build of a new Bento, same packages, layer cache warm",
            f"{warm.build_seconds:.0f} s",
            round(warm.build_seconds),
            "s",
            key="warm_build",
        ),
        Figure(
            f"start to /readyz inside the image (median of {len(readiness)})",
            f"{ready:.1f} s ({', '.join(f'{r:.1f}' for r in readiness)})",
            ready,
            "s",
            key="ready",
        ),
        Figure(
            "start to /readyz, `bentoml serve` of the same Bento on the host",
            f"{host_ready:.1f} s",
            round(host_ready, 1),
            "s",
            key="host_ready",
        ),
    ]


if __name__ == "__main__":
    main()
