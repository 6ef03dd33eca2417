"""What every kind's report shares: the model order and labels, the Report record, the check
that no done cell is damaged, the report folder, and atomic frames and figures.

The engine's part of `kdfair report`; each sweep kind (kdfair_cli.classifier, kdfair_cli.llm.sweep)
builds its tables on it, so the kinds never import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kdfair_cli.errors import KdfairError, RunFailed
from kdfair_cli.io.atomic import atomic_path
from kdfair_cli.sweep.cells import Cell, damaged_output, is_done, read_record

MODEL_ORDER = {"teacher": 0, "nds": 1, "ds": 2}
LABELS = {"teacher": "Teacher", "nds": "NDS", "ds": "DS"}
#: Significance level of the report's marks and sentences.
ALPHA = 0.05


@dataclass
class Report:
    results: pd.DataFrame
    table: pd.DataFrame
    markdown: str
    paths: dict[str, Path]
    missing: list[str]
    deltas: pd.DataFrame  # family "excess" (the headline: excess EOD/DPD and IF) and "raw"
    conclusions: list[str]


def delta_cell(row: pd.Series, digits: int, p_format: str) -> str:
    """A deltas row as a table cell, '+Δ (p P)' with * when its Holm-adjusted p < ALPHA; '-' when
    Δ is undefined."""
    if pd.isna(row["delta"]):
        return "-"
    p = "n/a" if pd.isna(row["p"]) else format(row["p"], p_format)
    star = "*" if not pd.isna(row["p_holm"]) and row["p_holm"] < ALPHA else ""
    return f"{row['delta']:+.{digits}f} (p {p}){star}"


def in_model_order(frame: pd.DataFrame, by: tuple[str, ...]) -> pd.DataFrame:
    """Rows in the report's order: teacher, NDS, DS, each by `by` (NaN first)."""
    if frame.empty:
        return frame
    frame = frame.assign(_o=frame["model"].map(MODEL_ORDER))
    return frame.sort_values(["_o", *by], na_position="first").drop(columns="_o").reset_index(drop=True)


def missing_cells(cells: list[Cell], sweep_dir: Path) -> list[str]:
    """The ids of the cells not done; RunFailed for a cell marked done whose outputs are unusable
    (never left out silently)."""
    missing = [c.id for c in cells if not is_done(c, sweep_dir)]
    for c in cells:
        rec = read_record(c.dir(sweep_dir)) if c.id in missing else None
        if rec and rec.get("status") == "done" and rec.get("hash") == c.hash:
            raise RunFailed(f"{sweep_dir}: cell {c.id} is marked done but {damaged_output(c, sweep_dir)}; "
                            f"`kdfair sweep run SPEC -o {sweep_dir}` redoes it")
    return missing


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def open_report(sweep_dir: str | Path, out_dir: str | Path | None, collector: Any,
                what: str) -> tuple[Path, pd.DataFrame, list[str], dict[str, Any]]:
    """(report folder, results, missing cells, sweep.json) of a sweep folder; KdfairError when
    `collector` finds no finished `what` yet."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir) if out_dir else Path(sweep_dir) / "report"
    results, missing, doc = collector(Path(sweep_dir))
    if results.empty:
        raise KdfairError(f"{sweep_dir}: no {what} yet; run `kdfair sweep run` first")
    out.mkdir(parents=True, exist_ok=True)
    return out, results, missing, doc


def write_frames(out: Path, results: pd.DataFrame, table: pd.DataFrame, delta: pd.DataFrame) -> dict[str, Path]:
    """results.parquet, table.csv and deltas.csv, each written atomically; their paths."""
    paths: dict[str, Path] = {}
    with atomic_path(out / "results.parquet") as tmp:
        results.to_parquet(tmp, index=False)
    paths["results"] = out / "results.parquet"
    for key, name, frame in (("csv", "table.csv", table), ("deltas", "deltas.csv", delta)):
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        paths[key] = out / name
    return paths
