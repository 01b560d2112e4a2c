"""The command line, run as a user would: pull, list, show, features."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from tests.conftest import make_bars

runner = CliRunner()


def test_pull_list_show_and_features_on_embedded_data(isolated_home: Path) -> None:
    first = runner.invoke(app, ["data", "pull", "--source", "embedded"])
    assert first.exit_code == 0, first.output
    assert "new snapshot" in first.output
    snapshot_dirs = [p for p in (isolated_home / "data" / "snapshots").iterdir()]
    assert len(snapshot_dirs) == 1
    snapshot_id = snapshot_dirs[0].name

    again = runner.invoke(app, ["data", "pull"])
    assert again.exit_code == 0
    assert "unchanged" in again.output

    listed = runner.invoke(app, ["data", "list"])
    assert listed.exit_code == 0
    assert "embedded" in listed.output

    shown = runner.invoke(app, ["data", "show", snapshot_id[:6]])
    assert shown.exit_code == 0
    assert "verified" in shown.output
    assert '"rows": 10062' in shown.output

    features = runner.invoke(app, ["features"], env={"COLUMNS": "200"})
    assert features.exit_code == 0, features.output
    assert "34 features, lookback 251 bars" in features.output
    assert "^GSPC: 5031 bars -> 4780 complete feature rows" in features.output


def test_csv_pull_with_bad_rows_exits_with_the_violations(tmp_path: Path) -> None:
    path = tmp_path / "X.csv"
    frame = make_bars(10)
    frame.loc[3, "low"] = -2.0
    frame.to_csv(path, index=False)
    result = runner.invoke(app, ["data", "pull", "--source", "csv", "--path", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "row 3" in result.output
    assert "price_not_positive" in result.output


def test_yfinance_without_tickers_is_a_usage_error() -> None:
    result = runner.invoke(app, ["data", "pull", "--source", "yfinance"])
    assert result.exit_code == 2


def test_show_unknown_snapshot_fails_clearly() -> None:
    result = runner.invoke(app, ["data", "show", "nope"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "no snapshot 'nope'" in result.output


def test_train_models_promote_and_rollback_from_the_command_line(isolated_home: Path) -> None:
    env = {"COLUMNS": "200"}
    assert runner.invoke(app, ["data", "pull"], env=env).exit_code == 0
    first = runner.invoke(app, ["train", "--quick", "-m", "return_lightgbm", "-m", "direction_lightgbm"], env=env)
    assert first.exit_code == 0, first.output
    assert "saved return_lightgbm:" in first.output and "report:" in first.output
    tags = [line.split()[1].rstrip(":") for line in first.output.splitlines() if line.startswith("saved ")]
    assert len(tags) == 2

    promoted = runner.invoke(app, ["promote", *tags, "--reason", "cli test"], env=env)
    assert promoted.exit_code == 0, promoted.output
    listed = runner.invoke(app, ["models"], env=env)
    assert "production" in listed.output and tags[0].split(":")[1] in listed.output
    narrow = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    assert max(len(line) for line in narrow.output.splitlines()) <= 80
    for tag in tags:  # names and versions whole, not cut to a few characters
        name, version = tag.split(":")
        assert any(name in line and version in line for line in narrow.output.splitlines()), narrow.output
    assert "…" not in narrow.output
    lines = narrow.output.splitlines()
    for tag in tags:  # each signal model's row carries its quant lines (the store may hold other tests' models)
        start = next(i for i, line in enumerate(lines) if tag.split(":")[1] in line)
        end = next((i for i in range(start + 1, len(lines)) if lines[i][:4].strip()), len(lines))
        row = "\n".join(lines[start:end])
        assert row.count("rank IC") == 1 and row.count("Sharpe") == 1, row
    wide = runner.invoke(app, ["models", "--wide"], env={"COLUMNS": "200"})
    assert "created (UTC)" in wide.output and "snapshot" in wide.output
    assert "rank IC [95 %]" in wide.output and "(5 bp)" in wide.output

    second = runner.invoke(app, ["train", "--quick", "-m", "return_lightgbm", "--promote"], env=env)
    assert second.exit_code == 0 and "promoted: return_lightgbm:" in second.output
    rolled = runner.invoke(app, ["rollback", "return_lightgbm"], env=env)
    assert rolled.exit_code == 0 and tags[0] in rolled.output

    refused = runner.invoke(app, ["promote", "return_lightgbm:doesnotexist"], env=env)
    assert refused.exit_code == 1 and "no model" in refused.output
    unknown = runner.invoke(app, ["train", "-m", "nope"], env=env)
    assert unknown.exit_code == 2
