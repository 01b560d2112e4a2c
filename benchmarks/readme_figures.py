"""Rewrite the README's measured figures from ``benchmarks/results/*.json``; ``make bench`` runs it last.

Every measured number in the README sits between markers, and only the text between them is generated:

- ``<!-- fig:service.cold_start -->4.6 s<!-- /fig -->``: the value of the figure keyed ``cold_start`` in
  ``results/service.json``, with its unit. ``<!-- fig:training.volatility_corr:.2f -->`` formats the value with a
  Python format spec; ``<!-- fig:flow.full_total target -->`` adds the target and whether it was met:
  "795 s (target < 480 s: not met)".
- ``<!-- figures:summary -->`` ... ``<!-- /figures -->``: a table of the results files, when each was measured and
  how many of its targets were met.

Run: ``.venv/bin/python benchmarks/readme_figures.py``. tests/test_readme_figures.py fails while the README differs
from what this would write.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import RESULTS, load_results

README = Path(__file__).resolve().parents[1] / "README.md"
# <!-- fig:NAME.KEY[:SPEC][ target] -->generated<!-- /fig -->, on one line
INLINE = re.compile(
    r"<!-- fig:(?P<name>\w+)\.(?P<key>\w+)(?::(?P<spec>[^\s>]+))?(?P<target> target)? -->.*?<!-- /fig -->"
)
SUMMARY = re.compile(r"<!-- figures:summary -->\n.*?<!-- /figures -->", re.S)


def quoted(figure: dict[str, Any], spec: str | None, with_target: bool) -> str:
    """A figure as the README's prose quotes it: its value and unit, and on request its target and whether met."""
    if figure["value"] is None:
        text = figure["shown"]
    else:
        unit = figure["unit"]
        text = format(figure["value"], spec or ",") + ("" if unit in ("", "x") else " ") + unit
    if with_target:
        if figure["target"] == "-":
            raise ValueError(f"the README asks for the target of {figure['what']!r}, which has none")
        met = {True: "met", False: "not met", None: "not judged"}[figure["met"]]
        target = re.sub(r"\s*\(.*\)$", "", figure["target"])  # its comment in brackets stays in the table
        text += f" (target {target}: {met})"
    return text


def summary(results: dict[str, dict[str, Any]]) -> str:
    """A table: each results file, when it was measured, how many of its targets were met."""
    lines = ["| results | measured | targets met |", "|---|---|---|"]
    for name, record in results.items():
        targeted = [f for f in record["figures"] if f["target"] != "-"]
        met = sum(f["met"] is True for f in targeted)
        link = f"[`{name}.md`]({RESULTS.relative_to(README.parent).as_posix()}/{name}.md)"
        lines.append(f"| {link} | {record['measured']} | {met} of {len(targeted)} |")
    return "\n".join(lines) + "\n"


def render(readme: str, results: dict[str, dict[str, Any]]) -> str:
    """``readme`` with every marked figure and the summary table rebuilt from ``results``."""
    figures = {f"{name}.{f['key']}": f for name, record in results.items() for f in record["figures"] if f["key"]}

    def figure(match: re.Match[str]) -> str:
        name = f"{match['name']}.{match['key']}"
        if name not in figures:
            raise ValueError(
                f"the README quotes {name}, which no {RESULTS.name}/*.json has: "
                "rename the marker, or rerun the benchmark that measures it"
            )
        opening = match.group().split("-->")[0] + "-->"
        return f"{opening}{quoted(figures[name], match['spec'], bool(match['target']))}<!-- /fig -->"

    readme = INLINE.sub(figure, readme)
    return SUMMARY.sub(lambda _: f"<!-- figures:summary -->\n{summary(results)}<!-- /figures -->", readme)


def main() -> None:
    before = README.read_text()
    try:
        after = render(before, load_results())
    except ValueError as error:
        raise SystemExit(f"README.md: {error}") from None
    README.write_text(after)
    changed = "rewritten" if after != before else "already up to date"
    print(f"README.md: {len(INLINE.findall(after))} figures from {RESULTS}, {changed}")


if __name__ == "__main__":
    main()
