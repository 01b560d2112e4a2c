"""The recorded benchmark figures: targets parsed, "met" computed, and the README's figures generated from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks._report import RESULTS, Figure, Target, load_results, markdown, met, parse_target
from benchmarks.readme_figures import README, render

REGENERATE = "run `.venv/bin/python benchmarks/readme_figures.py`"


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("< 10 s", "s", Target("<", 10.0)),
        ("p50 < 2 ms", "ms", Target("<", 2.0)),
        ("p50 < 2 ms", "s", Target("<", 0.002)),
        (">= 80 %", "%", Target(">=", 80.0)),
        (">= 80%", "%", Target(">=", 80.0)),
        ("<= 1.5x", "x", Target("<=", 1.5)),
        ("<= +10 %", "%", Target("<=", 10.0)),
        ("< 1 GiB (k8s request)", "MB", Target("<", 1073.741824)),
        ("< 0.00413 (best baseline)", "", Target("<", 0.00413)),
        ("= 0", "", Target("=", 0.0)),
        ("-", "s", None),
    ],
)
def test_targets_parse_into_an_operator_and_a_bound_in_the_figures_unit(
    text: str, unit: str, expected: Target | None
) -> None:
    parsed = parse_target(text, unit)
    if expected is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert (parsed.operator, parsed.bound) == (expected.operator, pytest.approx(expected.bound))


@pytest.mark.parametrize(("text", "unit"), [("audit passes", ""), ("< 10 s", "%"), ("< 5 furlongs", "s")])
def test_a_target_that_cannot_be_judged_is_an_error(text: str, unit: str) -> None:
    with pytest.raises(ValueError, match="target"):
        parse_target(text, unit)


@pytest.mark.parametrize(
    ("value", "unit", "target", "expected"),
    [
        (9.9, "s", "< 10 s", True),
        (10.0, "s", "< 10 s", False),  # the boundary: strictly below
        (10.0, "s", "<= 10 s", True),
        (1.73, "x", "<= 1.5x", False),
        (70.0, "%", ">= 70 %", True),
        (69.9, "%", ">= 70 %", False),
        (8.5, "%", "<= +10 %", True),
        (310, "MB", "< 1 GiB (k8s request)", True),
        (1074, "MB", "< 1 GiB (k8s request)", False),
        (0, "", "= 0", True),
        (1, "", "= 0", False),
        (4.6, "s", "-", None),  # no target: nothing to meet
        (None, "MB", "< 1 GiB", None),  # no value: cannot be judged
    ],
)
def test_met_is_computed_from_the_value_and_the_target(
    value: float | None, unit: str, target: str, expected: bool | None
) -> None:
    assert met(value, unit, target) is expected


def test_a_row_without_a_target_says_dash_never_yes() -> None:
    record = {
        "name": "example",
        "measured": "2026-01-01 00:00 UTC",
        "machine": "test",
        "command": "true",
        "figures": [Figure("a", "4.6 s", 4.6, "s").record(), Figure("b", "12 s", 12, "s", "< 10 s").record()],
        "notes": "",
    }
    rows = markdown(record).splitlines()[-2:]
    assert rows == ["| a | 4.6 s | - | - |", "| b | 12 s | < 10 s | NO |"]


RESULTS_FILES = sorted(RESULTS.glob("*.md"))


@pytest.mark.parametrize("path", RESULTS_FILES, ids=[p.stem for p in RESULTS_FILES])
def test_results_tables_say_yes_only_where_a_target_is_met(path: Path) -> None:
    twin = path.with_suffix(".json")
    assert twin.is_file(), f"{path.name} has no {twin.name}: write it with benchmarks/_report.py's write_results"
    record = json.loads(twin.read_text())
    assert path.read_text() == markdown(record), f"{path.name} differs from its twin {twin.name}"
    for row in path.read_text().splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if row.startswith("| ") and len(cells) >= 4 and cells[-2] == "-":
            assert cells[-1] == "-", f"{path.name}: a row without a target says {cells[-1]!r}: {row}"
    for figure in record["figures"]:
        assert figure["met"] == met(figure["value"], figure["unit"], figure["target"]), figure


def test_the_readmes_figures_are_the_recorded_ones() -> None:
    readme = README.read_text()
    assert readme == render(readme, load_results()), (
        f"README.md's figures differ from benchmarks/results/*.json: {REGENERATE}"
    )


def test_an_inline_figure_is_rewritten_with_its_unit_format_and_target() -> None:
    results = {
        "flow": {
            "measured": "2026-01-01 00:00 UTC",
            "figures": [Figure("whole flow", "795 s (...)", 795, "s", "< 480 s", "full_total").record()],
        }
    }
    readme = (
        "took <!-- fig:flow.full_total -->1 s<!-- /fig --> and "
        "<!-- fig:flow.full_total:.1f target -->typed by hand<!-- /fig -->."
    )
    assert render(readme, results) == (
        "took <!-- fig:flow.full_total -->795 s<!-- /fig --> and "
        "<!-- fig:flow.full_total:.1f target -->795.0 s (target < 480 s: not met)<!-- /fig -->."
    )
    with pytest.raises(ValueError, match=r"flow\.missing"):
        render("<!-- fig:flow.missing -->1 s<!-- /fig -->", results)
