"""The Dask cluster's Kubernetes manifests (deploy/k8s/dask/) and the worker image's recipe; the slow tier builds the
worker image and runs a real ``dask worker`` from it against a scheduler on this machine."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from deploy.worker_image import DATA_HOME, USER_ID, build_wheel, render_containerfile

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DASK_K8S = PROJECT_ROOT / "deploy" / "k8s" / "dask"


def documents() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted(DASK_K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            metadata = document.get("metadata", {"name": path.stem})  # the Kustomization has none
            name = metadata.get("name") or metadata.get("generateName")
            found[(document["kind"], name)] = document
    return found


def container(document: dict[str, Any]) -> dict[str, Any]:
    (only,) = document["spec"]["template"]["spec"]["containers"]
    return only


def test_dask_manifests_pass_the_kubernetes_schema_strictly() -> None:
    import kubernetes_validate

    docs = documents()
    assert len(docs) == 7  # volume, scheduler and its service, workers, the job, the monitor's cron job, kustomization
    for document in docs.values():
        if document["kind"] != "Kustomization":
            kubernetes_validate.validate(document, "1.30", strict=True)  # raises on any schema error


def test_the_kustomization_lists_every_manifest_but_the_job() -> None:
    kustomization = yaml.safe_load((DASK_K8S / "kustomization.yaml").read_text())
    on_disk = {p.name for p in DASK_K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk - {"train-job.yaml"}


def test_workers_reach_the_scheduler_service_and_share_the_data_volume() -> None:
    docs = documents()
    service = docs[("Service", "mlops-dask-scheduler")]
    comm = next(p for p in service["spec"]["ports"] if p["name"] == "tcp-comm")
    scheduler = docs[("Deployment", "mlops-dask-scheduler")]
    assert service["spec"]["selector"] == scheduler["spec"]["selector"]["matchLabels"]
    address = f"tcp://{service['metadata']['name']}:{comm['port']}"
    workers = docs[("Deployment", "mlops-dask-workers")]
    args = container(workers)["args"]
    assert args[:2] == ["worker", address]
    assert args[args.index("--nthreads") + 1] == "1"  # as cluster/client.py runs local workers
    assert args[args.index("--preload-nanny") + 1] == "cluster.worker_environ"  # so does their environment
    job = docs[("Job", "mlops-train-")]
    assert {"name": "MLOPS_DASK_SCHEDULER", "value": address} in container(job)["env"]
    for document in (workers, job):
        mounts = {m["mountPath"]: m["name"] for m in container(document)["volumeMounts"]}
        volumes = {
            v["name"]: v["persistentVolumeClaim"]["claimName"] for v in document["spec"]["template"]["spec"]["volumes"]
        }
        assert volumes[mounts[DATA_HOME]] == docs[("PersistentVolumeClaim", "mlops-data")]["metadata"]["name"]
    for document in (scheduler, workers, job):
        assert container(document)["image"].startswith("mlops-finance-worker")
        assert document["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == USER_ID


def test_dask_memory_limit_sits_under_the_container_s() -> None:
    workers = documents()[("Deployment", "mlops-dask-workers")]
    args = container(workers)["args"]
    dask_limit = args[args.index("--memory-limit") + 1]
    assert dask_limit.endswith("GiB") and container(workers)["resources"]["limits"]["memory"].endswith("Gi")
    assert float(dask_limit.removesuffix("GiB")) < float(container(workers)["resources"]["limits"]["memory"][:-2])


def test_worker_containerfile_installs_the_wheel_at_the_pinned_versions_as_a_non_root_user(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    text = render_containerfile("base:1", wheel.name, with_ca=False)
    assert text.startswith("FROM base:1\n")
    assert f"-c /tmp/install/constraints.txt /tmp/install/{wheel.name}" in text
    assert f"USER {USER_ID}" in text and 'ENTRYPOINT ["dask"]' in text
    assert "secret" not in text and "SSL_CERT_FILE" not in text
    with_ca = render_containerfile("base:1", wheel.name, with_ca=True)
    assert "RUN --mount=type=secret,id=mlops_ca" in with_ca and "ARG SSL_CERT_FILE=/run/secrets/mlops_ca" in with_ca
    import zipfile

    packages = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {"cli", "cluster", "data", "features", "training", "bentos", "scoring", "deploy"} <= packages


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_worker_image_runs_a_dask_worker_that_computes_the_project_s_features(tmp_path: Path) -> None:
    """Build the worker image, start a scheduler here and a worker from the image, and compute features there."""
    from distributed import Client

    from data.sources import EmbeddedSource
    from deploy.image import backend_from, run_container
    from deploy.smoke import free_port
    from deploy.worker_image import build_worker_image
    from features import DEFAULT_SPEC, Bars, validate_ohlcv
    from tests.test_image import _image_settings

    started = time.perf_counter()
    settings = _image_settings()
    backend = backend_from(settings)
    result = build_worker_image(settings, say=print)
    print(f"\n{result.image}: {result.size_bytes / 1e6:.0f} MB in {result.build_seconds} s on {result.base_image}")
    port = free_port()
    scheduler = subprocess.Popen(
        [str(Path(sys.executable).parent / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        address = f"tcp://127.0.0.1:{port}"
        arguments = ["worker", address, "--nthreads", "1", "--no-dashboard", "--name", "from-image"]
        arguments += ["--preload-nanny", "cluster.worker_environ"]
        with (
            run_container(backend, result.image, arguments, tmp_path / "worker.log"),
            Client(address, timeout="60s") as client,
        ):
            client.wait_for_workers(1, timeout=300)
            versions = client.get_versions(check=True)  # raises if the image's Dask differs from ours
            assert set(versions["workers"]) and versions["scheduler"]["packages"]["dask"]
            frame = EmbeddedSource().fetch()
            bars = validate_ohlcv(frame[frame["symbol"] == frame["symbol"].iloc[0]].drop(columns="symbol"))
            # the project's own code, pickled by reference: the worker imports it from the image's installed wheel
            remote = client.submit(DEFAULT_SPEC.compute, Bars.from_frame(bars)).result(timeout=300)
            interpreters = client.run(lambda: __import__("sys").executable)
            assert all(path.startswith("/usr") for path in interpreters.values()), interpreters
        np.testing.assert_array_equal(remote, DEFAULT_SPEC.compute(Bars.from_frame(bars)))
    finally:
        scheduler.terminate()
        scheduler.wait(30)
        backend.remove_image(result.image)
        backend.remove_image(result.image.rsplit(":", 1)[0] + ":latest")
    print(f"worker image slow tier: {time.perf_counter() - started:.0f} s")
