"""Settings of the service, read from the environment (prefix ``MLOPS_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent


class ServiceSettings(BaseSettings):
    """Which models to serve and the limits every request is held to."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    production_file: Path = Field(
        PACKAGE_DIR / "production.json",
        description="Model name -> tag of the versions to serve; written by `mlops build` from the registry.",
    )
    max_bars: int = Field(5000, ge=300, description="Most bars accepted in one window.")
    max_windows: int = Field(256, ge=1, description="Most windows accepted in one batch call.")
