"""Settings of the data layer, read from the environment (prefix ``MLOPS_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class DataSettings(BaseSettings):
    """Where snapshots live and how hard a yfinance pull tries before it gives up."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    home: Path = Field(PROJECT_ROOT, description="Root of the project's generated files.")
    snapshot_dir: Path | None = Field(None, description="Snapshot store; defaults to <home>/data/snapshots.")
    yfinance_deadline_seconds: float = Field(120.0, gt=0, description="Overall deadline of one yfinance pull.")
    yfinance_request_timeout_seconds: float = Field(20.0, gt=0, description="Timeout of one HTTP request.")
    yfinance_attempts: int = Field(3, ge=1, description="Attempts per ticker before the pull fails.")
    yfinance_backoff_seconds: float = Field(2.0, ge=0, description="First retry delay; doubles each retry.")
    yfinance_batch_size: int = Field(50, ge=1, description="Tickers asked for in one yfinance download call.")

    @property
    def snapshots(self) -> Path:
        return self.snapshot_dir or self.home / "data" / "snapshots"
