"""The BentoML private API the project relies on (bentos/bentoml_private.py) is still there, with the shape used.

A BentoML upgrade that moves or reshapes one of these fails here, naming it, instead of in a save, a request or an
image build somewhere else. Each test names what to look at in BentoML's source when it fails.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

PRIVATE_NAMES = [
    ("bentoml._internal.configuration.containers", "BentoMLContainer"),
    ("bentoml._internal.models", "ModelStore"),
    ("bentoml._internal.tag", "Tag"),
    ("bentoml._internal.container.frontend.dockerfile", "CONTAINER_METADATA"),
    ("bentoml._internal.bento.bento", "BaseBentoInfo"),
    ("bentoml._internal.bento.bento", "BentoInfoV2"),
    ("bentoml._internal.bento.bento", "ImageInfo"),
    ("bentoml._internal.bento.build_config", "BentoEnvSchema"),
    ("bentoml._internal.container", "split_envs_by_stage"),
    ("bentoml._internal.container", "construct_containerfile"),
    ("_bentoml_impl.docker", "generate_dockerfile"),
    ("bentoml._internal.monitoring.api", "_MONITOR_INSTANCES"),
]


@pytest.mark.parametrize(("module", "name"), PRIVATE_NAMES)
def test_private_name_exists(module: str, name: str) -> None:
    found = importlib.import_module(module)
    assert hasattr(found, name), f"BentoML no longer has {module}.{name}: update bentos/bentoml_private.py"


def test_model_store_has_the_register_hook_and_provider() -> None:
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    assert "tag" in inspect.signature(ModelStore.register).parameters, "ModelStore.register(tag) changed"
    for provider in ("model_store", "model_store_dir"):
        assert hasattr(BentoMLContainer, provider), f"BentoMLContainer.{provider} is gone"
    assert hasattr(BentoMLContainer.model_store, "set"), "BentoMLContainer.model_store can no longer be replaced"


def test_atomic_store_is_installed_by_the_registry(tmp_path: Path) -> None:
    """Importing the project's store module replaces BentoML's store with the atomic one."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    import training.registry.store  # noqa: F401

    assert getattr(BentoMLContainer.model_store.get(), "atomic_saves", False)


def test_container_helpers_have_the_arguments_used() -> None:
    from _bentoml_impl.docker import generate_dockerfile
    from bentoml._internal.container import construct_containerfile

    parameters = inspect.signature(generate_dockerfile).parameters
    assert list(parameters)[:2] == ["image", "bento_fs"], "generate_dockerfile(image, bento_fs, ...) changed"
    # enable_buildkit, add_header and envs reach the Dockerfile template as keyword arguments
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    assert "enable_buildkit" in inspect.signature(construct_containerfile).parameters
    from bentos.bentoml_private import debian_install_commands

    install, default = debian_install_commands()
    assert "{packages}" in install and default, "BentoML's Debian install command templates changed"


def test_api_exceptions_are_logged_on_the_logger_the_client_error_filter_is_on() -> None:
    """bentos.client_errors filters BentoML's log of a method's 4xx by that logger's name (``BENTOML_APP_LOGGER``):
    see ``log_exception`` in bentoml/_internal/server/http_app.py and its calls in _bentoml_impl/server/app.py."""
    import _bentoml_impl.server.app as service_app
    import bentoml._internal.server.http_app as http_app

    from bentos.bentoml_private import BENTOML_APP_LOGGER

    assert http_app.logger.name == BENTOML_APP_LOGGER, "BentoML's HTTP app logs on another logger now"
    assert service_app.log_exception is http_app.log_exception, "the service app no longer logs through log_exception"
    assert "exc_info" in inspect.signature(http_app.log_exception).parameters


def test_the_monitor_bentoml_monitor_creates_is_found_and_records_like_it(tmp_path: Path) -> None:
    """bentoml.monitor's first record creates the monitor; the next records, written on it directly, land in the
    same file, one JSON line each (see bentoml/_internal/monitoring/api.py: monitor(), MonitorBase)."""
    import json

    from bentos import recording
    from bentos.bentoml_private import opened_monitor

    name = f"private-check-{tmp_path.name}"
    assert opened_monitor(name) is None
    import bentoml

    first, second = ({column: value for column in recording.NAMES} for value in (1, 2))
    with bentoml.monitor(name, monitor_options={"log_path": str(tmp_path)}) as created:
        recording._log(created, [first])
    assert opened_monitor(name) is created
    created.start_record()
    recording._log(created, [second])
    created.stop_record()
    lines = [json.loads(line) for line in (tmp_path / name / "data" / "data.0.log").read_text().splitlines()]
    assert [line["prediction"] for line in lines] == [1, 2]
    assert lines[0].keys() == lines[1].keys() >= {*recording.NAMES, "timestamp", "request_id"}


def test_model_info_is_read_with_libyaml_and_reads_the_same(production_models: dict[str, str]) -> None:
    """BentoML's model module reads model.yaml with libyaml's safe loader once the service asked for it, and every
    production model's info (with its card) reads the same as with PyYAML's pure-Python loader (see
    bentoml/_internal/models/model.py: ModelInfo.from_yaml_file)."""
    import bentoml
    import yaml
    from bentoml._internal.models import model

    from bentos.bentoml_private import read_model_info_with_libyaml

    read_model_info_with_libyaml()
    read_model_info_with_libyaml()  # idempotent: one wrapper, not a wrapper of a wrapper
    assert type(model.yaml).__name__ == "_LibyamlSafeLoad" and model.yaml.YAMLError is yaml.YAMLError
    for tag in production_models.values():
        text = (Path(bentoml.models.get(tag).path) / "model.yaml").read_text()
        assert model.yaml.safe_load(text) == yaml.load(text, Loader=yaml.SafeLoader)
        with open(Path(bentoml.models.get(tag).path) / "model.yaml") as stream:
            assert model.ModelInfo.from_yaml_file(stream).metadata == bentoml.models.get(tag).info.metadata
