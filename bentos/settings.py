"""Settings of the service, read from the environment (prefix ``MLOPS_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent


class ServiceSettings(BaseSettings):
    """Which models to serve and the limits every request is held to."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    production_file: Path | None = Field(
        None,
        description="A manifest (model name -> tag) of the versions to serve; by default a built Bento's shipped "
        "manifest, or in the source tree what the registry calls production.",
    )
    max_bars: int = Field(5000, ge=300, description="Most bars accepted in one window.")
    max_windows: int = Field(256, ge=1, description="Most windows accepted in one batch call.")
    max_coalesced: int = Field(
        64, ge=1, description="Most concurrent one-window requests whose features are computed in one pass."
    )
    max_body_bytes: int = Field(
        16 * 2**20, ge=2**16, description="Largest request body accepted (413 above it), before any parsing."
    )
    api_keys: SecretStr | None = Field(
        None, description="Comma-separated API keys; when set (or api_keys_file), every API method needs one."
    )
    api_keys_file: Path | None = Field(
        None, description="A file of API keys, one a line ('#' comments), e.g. a mounted Kubernetes secret."
    )
    record_answers: bool = Field(
        True, description="Record every answer through bentoml.monitor (bentos/recording.py) for the live loop."
    )
    home: Path = Field(PACKAGE_DIR.parent, description="Root of the project's generated files (MLOPS_HOME).")
    monitor_log_path: Path | None = Field(
        None, description="Folder of the recorded answers' JSON lines; defaults to <MLOPS_HOME>/data/monitoring/logs."
    )

    @field_validator("production_file", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if value == "" else value

    def load_api_keys(self) -> list[str]:
        """The configured keys (none: authentication off); an empty or unreadable key file is an error."""
        keys = [k.strip() for k in (self.api_keys.get_secret_value() if self.api_keys else "").split(",")]
        if self.api_keys_file is not None:
            try:
                lines = self.api_keys_file.read_text(encoding="utf-8").splitlines()
            except OSError as error:
                raise ValueError(f"MLOPS_API_KEYS_FILE={self.api_keys_file}: {error.strerror}") from None
            from_file = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
            if not from_file:
                raise ValueError(f"MLOPS_API_KEYS_FILE={self.api_keys_file} holds no key")
            keys += from_file
        return [k for k in keys if k]

    @property
    def monitor_logs(self) -> Path:
        return self.monitor_log_path or self.home / "data" / "monitoring" / "logs"

    @property
    def authentication(self) -> bool:
        return self.api_keys is not None or self.api_keys_file is not None
