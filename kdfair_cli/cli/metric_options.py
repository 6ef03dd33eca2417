"""Options and helpers shared by the metric commands (column remapping, reading, output)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import numpy as np
import pyarrow as pa
import typer

from kdfair_cli.cli.common import console
from kdfair_cli.jsonable import jsonable
from kdfair_cli.io.tables import with_meta, write_table

LabelCol = Annotated[str, typer.Option("--label-col", help="Column with the true class.",
                                       rich_help_panel="Columns")]
PredCol = Annotated[str, typer.Option("--pred-col", help="Column with the predicted class.",
                                      rich_help_panel="Columns")]
LogitsCol = Annotated[str, typer.Option("--logits-col", help="List column with logits "
                                        "(or per-class logit_<k> columns).",
                                        rich_help_panel="Columns")]
IdCol = Annotated[str, typer.Option("--id-col", help="Column with the sample id (row index if "
                                    "absent).", rich_help_panel="Columns")]
AttrPrefix = Annotated[str, typer.Option("--attr-prefix", help="Prefix of attribute columns.",
                                         rich_help_panel="Columns")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
OutPath = Annotated[Path | None, typer.Option("-o", "--out", help="Write the result table "
                                              "(Parquet, or CSV for a .csv name).")]


def reflow(doc: str | None) -> str | None:
    """Join the wrapped lines of each docstring paragraph so --help wraps them to the terminal;
    indented lines (examples) stay as they are."""
    if not doc:
        return doc
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    for line in lines:
        prose = line and not line.startswith(" ")
        if prose and out and out[-1] and not out[-1].startswith(" "):
            out[-1] += " " + line
        else:
            out.append(line)
    return "\n".join(out)


def write_records(path: Path, records: dict[str, np.ndarray | list], meta: dict | None = None) -> None:
    """Write a column dict atomically as Parquet or CSV (by extension)."""
    table = pa.table({k: pa.array(v) for k, v in records.items()})
    if meta is not None:
        table = with_meta(table, jsonable(meta))
    write_table(path, table)
    console.print(f"wrote {path}")


def fmt(x: float, pct: bool = False, digits: int = 4) -> str:
    """A number for a table; NaN as 'n/a'."""
    if x is None or not np.isfinite(x):
        return "n/a" if x is None or np.isnan(x) else ("inf" if x > 0 else "-inf")
    return f"{100 * x:.2f}" if pct else f"{x:.{digits}g}"
