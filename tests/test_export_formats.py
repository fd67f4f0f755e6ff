"""The export format registry is the one source of a format's facts: docs/export.md's format table and the
CLI's choices agree with it, and every record is complete.

Like tests/test_cli_docs.py for flags: a format added to ``FORMATS`` without its row, or a row whose
extension, precisions, tolerance, dynamic dimensions or packages differ from the record, fails with the names.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from swiftformer.cli import build_parser
from swiftformer.export import ARTIFACT_PRECISIONS, FORMATS
from swiftformer.export.formats import REDUCED_TOLERANCE, ExportFormat

DOC = Path(__file__).parents[1] / "docs" / "export.md"


def _table_rows(section: str) -> dict[str, list[str]]:
    """The rows of the tables in ``## section`` of the doc, by their first cell (without backticks)."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, f"{DOC} has no '## {section}' section"
    rows = {}
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) > 1:
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def _output_cell(fmt: ExportFormat) -> str:
    if not fmt.is_directory:
        return f"file `{fmt.extension}`"
    return f"directory `{fmt.extension}` with `{fmt.marker}`" if fmt.extension else f"directory with `{fmt.marker}`"


def _needs_cell(fmt: ExportFormat) -> str:
    if not fmt.requires:
        return "torch only"
    return f"`.[{fmt.extra}]`: " + ", ".join(pip for _, pip in fmt.requires)


def _dynamic(cell: str) -> tuple[str, ...]:
    cell = re.sub(r"\s*\(\*\)$", "", cell)
    return () if cell == "none" else tuple(cell.split(", "))


def test_docs_format_table_matches_the_registry():
    rows = _table_rows("Formats")
    assert list(rows) == list(FORMATS), f"{DOC}: the format table lists {list(rows)}, the registry {list(FORMATS)}"
    problems = []
    for name, fmt in FORMATS.items():
        output, precisions, tolerance, dynamic, needs = rows[name][:5]
        expected = {
            "--output": (output, _output_cell(fmt)),
            "precisions": (precisions, ", ".join(fmt.precisions)),
            "fp32 tolerance": (float(tolerance), fmt.tolerance),
            "dynamic dimensions": (_dynamic(dynamic), fmt.dynamic),
            "needs": (needs, _needs_cell(fmt)),
        }
        problems += [
            f"{name} {column}: {got!r}, the record says {want!r}"
            for column, (got, want) in expected.items()
            if got != want
        ]
    assert not problems, f"{DOC}'s format table disagrees with swiftformer.export.FORMATS:\n" + "\n".join(problems)


def test_docs_reduced_tolerances_match():
    rows = _table_rows("What is verified")
    assert {p: float(cells[0]) for p, cells in rows.items() if p in ARTIFACT_PRECISIONS} == REDUCED_TOLERANCE


def test_cli_choices_come_from_the_registry():
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    actions = {a.dest: a for a in subparsers.choices["export"]._actions}
    assert list(actions["format"].choices) == list(FORMATS)
    assert list(actions["precision"].choices) == list(ARTIFACT_PRECISIONS)
    for fmt in FORMATS.values():
        if not fmt.is_directory:
            assert fmt.extension in actions["output"].help


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_record_is_complete(name):
    fmt = FORMATS[name]
    assert fmt.name == name and "fp32" in fmt.precisions and set(fmt.precisions) <= set(ARTIFACT_PRECISIONS)
    assert set(fmt.precisions) - {"fp32"} <= set(REDUCED_TOLERANCE) and 0 < fmt.tolerance < 1e-3
    assert set(fmt.dynamic) <= {"batch", "height", "width"}
    assert fmt.is_directory or fmt.extension.startswith("."), "a file format needs its extension"
    assert fmt.extra in ("export", "tf") and callable(fmt.exporter) and callable(fmt.runner)
    assert fmt.static_size == ("height" not in fmt.dynamic) and fmt.batch == (None if "batch" in fmt.dynamic else 1)


def test_unknown_format_and_precision_name_the_choices():
    from swiftformer.export.formats import get_format

    with pytest.raises(ValueError, match="format must be one of onnx, openvino, executorch, coreml, aoti, tflite"):
        get_format("torchscript")
    with pytest.raises(ValueError, match=r"precision for aoti must be one of fp32, bf16, got 'fp16'$"):
        FORMATS["aoti"].check_precision("fp16")
    with pytest.raises(ValueError, match=r"known precisions: fp32, fp16, bf16, int8"):
        FORMATS["onnx"].check_precision("int4")
