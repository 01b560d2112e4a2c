"""The OCI image: Kubernetes manifests (schema-checked), apt mirror discovery, the lean Dockerfile, backend choice,
and (slow tier) a real image built from a fresh Bento, started and called on every method."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from deploy.base_image import AptSource, BaseImageError, BaseRecipe, read_apt_sources, sources_for_suite
from deploy.image import (
    CA_PATH,
    CA_SECRET,
    ImageBuildError,
    ImageSettings,
    backend_from,
    choose_base,
    lean_commands,
    render_containerfile,
)
from deploy.oci import Backend, ImageToolError, apt_install, detect_backend

PROJECT_ROOT = Path(__file__).resolve().parents[1]
K8S = PROJECT_ROOT / "deploy" / "k8s"
DEBIAN_DEFAULT = (
    "apt-get update && apt-get install -q -y --no-install-recommends --allow-remove-essential "
    "ca-certificates gnupg2 bash build-essential git"
)
APT_INSTALL = "apt-get install -q -y -o Dpkg::Options::=--force-confdef "


def manifests() -> dict[str, dict]:
    documents = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            documents[document["kind"]] = document
    return documents


# Kubernetes manifests


def test_manifests_pass_the_kubernetes_schema_strictly() -> None:
    import kubernetes_validate

    resources = [d for kind, d in manifests().items() if kind != "Kustomization"]
    assert {d["kind"] for d in resources} == {"Deployment", "Service", "PersistentVolumeClaim"}
    for document in resources:
        kubernetes_validate.validate(document, "1.30", strict=True)  # raises on any schema error


def test_schema_check_catches_a_broken_manifest() -> None:
    import kubernetes_validate

    deployment = manifests()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = {"bad": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.30", strict=True)


def test_deployment_probes_resources_and_service_fit_together() -> None:
    documents = manifests()
    pod = documents["Deployment"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert pod["spec"]["securityContext"]["runAsUser"] == 1034  # BentoML's image user
    service = documents["Service"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    # every replica records its answers under its own folder of the monitor's volume
    env = {e["name"]: e for e in container["env"]}
    assert env["MLOPS_MONITOR_LOG_PATH"]["value"] == "/monitor/logs/$(POD_NAME)"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    (volume,) = pod["spec"]["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == documents["PersistentVolumeClaim"]["metadata"]["name"]
    assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": "/monitor"}]
    kustomization = documents["Kustomization"]
    assert all((K8S / name).is_file() for name in kustomization["resources"])
    assert kustomization["images"][0]["name"] == container["image"]


# The base image's Debian mirror


def test_apt_sources_are_read_from_both_formats(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# a comment\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/corp.gpg] http://mirror.corp/debian bookworm main contrib\n"
        "deb-src http://mirror.corp/debian bookworm main\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb deb-src\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://deb.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n"
    )
    (tmp_path / "sources.list.d" / "node.sources.disabled").write_text("Types: deb\nURIs: http://x\nSuites: y\n")
    sources = read_apt_sources(tmp_path)
    assert sources == [
        AptSource(("http://mirror.corp/debian",), ("bookworm",), ("main", "contrib"), "/usr/share/keyrings/corp.gpg"),
        AptSource(
            ("http://deb.example/debian",),
            ("bookworm", "bookworm-updates"),
            ("main",),
            "/usr/share/keyrings/debian-archive-keyring.gpg",
        ),
        AptSource(("http://deb.example/debian-security",), ("bookworm-security",), ("main",)),
    ]


def test_the_suite_s_sources_are_chosen_and_a_missing_mirror_is_named() -> None:
    sources = [
        AptSource(("http://d/debian",), ("trixie", "bookworm", "bookworm-updates", "bookworm-backports"), ("main",)),
        AptSource(("http://d/debian-security",), ("bookworm-security",), ("main",)),
        AptSource(("https://packages.example/apt",), ("cloud-sdk",), ("main",)),
    ]
    chosen = sources_for_suite(sources, "bookworm")
    assert [s.suites for s in chosen] == [("bookworm", "bookworm-updates"), ("bookworm-security",)]
    recipe = BaseRecipe("bookworm", "amd64", tuple(chosen))
    assert recipe.mirror.uris == ("http://d/debian",)
    assert recipe.image.startswith("localhost/mlops-finance/python-base:3.11-bookworm-amd64-")
    with pytest.raises(BaseImageError, match=r"no Debian mirror for 'bookworm'.*MLOPS_IMAGE_DEBIAN_MIRROR"):
        sources_for_suite(sources[1:], "bookworm")


def test_the_base_image_key_follows_its_recipe() -> None:
    mirror = (AptSource(("http://a/debian",), ("bookworm",), ("main",)),)
    recipe = BaseRecipe("bookworm", "amd64", mirror)
    assert recipe.key == BaseRecipe("bookworm", "amd64", mirror).key
    other_mirror = (AptSource(("http://b/debian",), ("bookworm",), ("main",)),)
    assert recipe.key != BaseRecipe("bookworm", "amd64", other_mirror).key
    assert recipe.key != BaseRecipe("bookworm", "arm64", mirror).key
    assert recipe.key != BaseRecipe("bookworm", "amd64", mirror, ("python3",)).key


# The lean Dockerfile


def test_lean_commands_drop_compilers_and_git_and_merge_the_apt_step() -> None:
    commands = [DEBIAN_DEFAULT, f"{APT_INSTALL}libgomp1", f"{APT_INSTALL}'libpq5'", "echo hi"]
    assert lean_commands(commands) == [
        "apt-get update -q && apt-get install -q -y --no-install-recommends libgomp1 libpq5"
        " && apt-get clean && rm -rf /var/lib/apt/lists/*",
        "echo hi",
    ]
    assert lean_commands([DEBIAN_DEFAULT]) == []


def image_info(commands: list[str]):  # type: ignore[no-untyped-def]
    from bentoml._internal.bento.bento import ImageInfo

    return ImageInfo(
        base_image="python:3.11-slim",
        python_version="3.11",
        commands=commands,
        python_requirements="bentoml==1.4.40\n",
    )


def test_containerfile_is_bentoml_s_on_the_chosen_base_without_build_tools() -> None:
    text = render_containerfile(image_info([DEBIAN_DEFAULT, f"{APT_INSTALL}libgomp1"]), "localhost/base:1", False)
    assert text.count("FROM ") == 1
    assert "FROM localhost/base:1 AS base-container" in text
    assert "build-essential" not in text
    assert " git" not in text
    assert "--no-install-recommends libgomp1 && apt-get clean && rm -rf /var/lib/apt/lists/*" in text
    assert "requirements.txt && find /app/.venv/lib -type d -name tests -prune -exec rm -rf {} +" in text
    assert "# syntax" not in text  # BuildKit would fetch the frontend image from Docker Hub
    assert 'ENTRYPOINT [ "/home/bentoml/bento/env/docker/entrypoint.sh" ]' in text
    assert CA_SECRET not in text
    assert "SSL_CERT_FILE" not in text


def test_ca_bundle_is_a_build_secret_of_every_step_and_never_in_the_image_environment() -> None:
    text = render_containerfile(image_info([DEBIAN_DEFAULT, f"{APT_INSTALL}libgomp1"]), "localhost/base:1", True)
    lines = text.splitlines()
    runs = [line for line in lines if line.startswith("RUN ")]
    assert len(runs) >= 4
    assert all(line.startswith(f"RUN --mount=type=secret,id={CA_SECRET},target={CA_PATH} ") for line in runs)
    from_line = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
    assert lines[from_line + 1 : from_line + 4] == [
        f"ARG SSL_CERT_FILE={CA_PATH}",
        f"ARG PIP_CERT={CA_PATH}",
        f"ARG REQUESTS_CA_BUNDLE={CA_PATH}",
    ]
    assert not [line for line in lines if line.startswith("ENV") and CA_PATH in line]
    assert not [line for line in lines if line.startswith(("COPY", "ADD")) and "ca" in line.split()[-2:]]


# Backends


def fake_tool(directory: Path, name: str, exit_code: int) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    path.chmod(0o755)


def test_backend_auto_skips_a_docker_client_without_an_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_tool(tmp_path, "docker", 1)
    fake_tool(tmp_path, "buildah", 0)
    monkeypatch.setenv("PATH", str(tmp_path))
    backend = detect_backend("auto", storage_driver="vfs")
    assert backend.name == "buildah"
    assert backend.command("images") == [str(tmp_path / "buildah"), "--storage-driver", "vfs", "images"]
    with pytest.raises(ImageToolError, match="no Docker engine answers"):
        detect_backend("docker")
    fake_tool(tmp_path, "docker", 0)
    assert detect_backend("auto").name == "docker"
    with pytest.raises(ImageToolError, match="unknown image backend 'kaniko'"):
        detect_backend("kaniko")


def test_build_commands_of_the_daemonless_tools_and_of_docker() -> None:
    secrets = {CA_SECRET: Path("/etc/ca.pem")}
    buildah = Backend("buildah", "/usr/bin/buildah", "vfs").build_command(
        Path("/ctx"), Path("/ctx/Dockerfile"), ["a:1", "a:latest"], secrets, layers=True
    )
    assert buildah == [
        "/usr/bin/buildah", "--storage-driver", "vfs", "build", "--tag=a:1", "--tag=a:latest",
        "--file", "/ctx/Dockerfile", "--secret", f"id={CA_SECRET},src=/etc/ca.pem",
        "--isolation", "chroot", "--format", "oci", "--layers=true", "/ctx",
    ]  # fmt: skip
    docker = Backend("docker", "/usr/bin/docker", "vfs").build_command(
        Path("/ctx"), Path("/ctx/Dockerfile"), ["a:1"], {}, layers=False
    )
    assert docker == ["/usr/bin/docker", "build", "--tag=a:1", "--file", "/ctx/Dockerfile", "/ctx"]


def test_no_backend_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ImageToolError, match=r"docker: not installed; podman: not installed; buildah: not installed"):
        detect_backend()


class OfflineBackend(Backend):
    def image_exists(self, image: str) -> bool:
        return False

    def pull(self, image: str, timeout: float) -> str:
        return "no such host"


def test_base_falls_back_to_the_debian_build_only_when_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = OfflineBackend("buildah", "/usr/bin/buildah")
    with pytest.raises(ImageBuildError, match=r"cannot pull the base image python:3\.11-slim: no such host"):
        choose_base(backend, "python:3.11-slim", ImageSettings(base="registry"), say=lambda _: None)
    built: list[str] = []

    def fake_ensure(backend: Backend, recipe: BaseRecipe, *args: object) -> tuple[str, bool]:
        built.append(recipe.suite)
        return recipe.image, True

    monkeypatch.setattr("deploy.base_image.ensure_base_image", fake_ensure)
    settings = ImageSettings(base="auto", debian_mirror="http://mirror.example/debian")
    image, cached = choose_base(backend, "python:3.11-slim", settings, say=lambda _: None)
    assert image.startswith("localhost/mlops-finance/python-base:3.11-bookworm-")
    assert cached
    assert built == ["bookworm"]


def test_image_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ImageSettings().ca_bundle is None  # trusting a proxy's CA is never the default
    monkeypatch.setenv("MLOPS_IMAGE_BACKEND", "buildah")
    monkeypatch.setenv("MLOPS_IMAGE_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    settings = ImageSettings()
    assert settings.backend == "buildah"
    assert settings.ca_bundle == Path("/etc/ssl/certs/ca-certificates.crt")


def test_cli_names_a_wrong_option_value() -> None:
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, ["image", "--backend", "kaniko", "--no-smoke"])
    assert result.exit_code == 1
    assert "--backend: Input should be 'auto', 'docker', 'podman' or 'buildah'" in " ".join(result.output.split())


# Slow tier: a real image from a fresh Bento


def _image_settings() -> ImageSettings:
    """Settings that can build here (buildah, debootstrap installed with apt if missing); else skip, saying why."""
    settings = ImageSettings(install_tools=True, ca_bundle=_host_ca_bundle())
    try:
        backend = backend_from(settings)
        if backend.name != "docker" and shutil.which("debootstrap") is None:
            apt_install(("debootstrap",), "building the Debian base image needs debootstrap")
    except ImageToolError as error:
        pytest.skip(f"cannot build images on this machine: {error}")
    unreachable = _pypi_answers(settings.ca_bundle)
    if unreachable:
        pytest.skip(f"the image build installs its packages from PyPI, which this machine cannot reach: {unreachable}")
    return settings.model_copy(update={"backend": backend.name})


def _host_ca_bundle() -> Path | None:
    """The CA bundle the host environment already names (the user's own configuration), if any."""
    for name in ("MLOPS_IMAGE_CA_BUNDLE", "SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
        if os.environ.get(name) and Path(os.environ[name]).is_file():
            return Path(os.environ[name])
    return None


def _pypi_answers(ca_bundle: Path | None) -> str:
    import ssl

    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    try:
        with urllib.request.urlopen("https://pypi.org/simple/uv/", timeout=20, context=context):
            return ""
    except OSError as error:
        return str(error)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_image_from_a_fresh_bento_starts_and_answers_every_method(
    production_models: dict[str, str], tmp_path: Path
) -> None:
    from deploy.bento import build, build_context
    from deploy.image import bento_production, containerize, smoke_test_image

    settings = _image_settings()
    backend = backend_from(settings)
    started = time.perf_counter()
    (tmp_path / "context").mkdir()
    tag = build(production_models, build_context(tmp_path / "context"))
    assert bento_production(tag) == production_models
    result = containerize(tag, settings, say=print)
    try:
        print(f"\n{result.image}: {result.size_bytes / 1e6:.0f} MB in {result.build_seconds} s on {result.base_image}")
        assert result.size_bytes < 900e6
        look_for_tools = "for t in gcc cc g++ make git; do command -v $t; done; echo checked"
        tools = backend.run_command(result.image, ["sh", "-c", look_for_tools])
        assert tools.stdout.strip() == "checked", f"build tools in the image: {tools.stdout} {tools.stderr}"
        environment = backend.run_command(result.image, ["env"])
        assert environment.returncode == 0
        assert "BENTO_PATH=/home/bentoml/bento" in environment.stdout
        assert not [line for line in environment.stdout.splitlines() if line.startswith(("SSL_CERT_FILE", "PIP_CERT"))]
        assert backend.run_command(result.image, ["test", "!", "-e", CA_PATH]).returncode == 0

        report = smoke_test_image(result.image, production_models, timeout=600, settings=settings)
        print(f"ready in {report['ready_seconds']} s; every method answered: {report['milliseconds']}")
        assert set(report["milliseconds"]) >= {"predict_all", "predict_all_batch", "forecast_price", "models"}
        leftovers = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
        assert "/home/bentoml/bento" not in leftovers, leftovers
    finally:
        backend.remove_image(result.image)
    print(f"slow tier: {time.perf_counter() - started:.0f} s")
