"""The report of a sweep folder: per-model results, the paper-style table, plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdfair_cli.jsonable import jsonable


@dataclass
class ReportResult:
    """A built report (its `report` holds the DataFrames); `to_dict()` is `kdfair report --json`."""

    report: Any  # the kind's Report (kdfair_cli.sweep.report_frame.Report)

    @property
    def results(self) -> Any:
        """One row per model and seed (pandas DataFrame, also results.parquet)."""
        return self.report.results

    @property
    def table(self) -> Any:
        """Mean ± std over seeds per role and temperature (pandas DataFrame, also table.csv)."""
        return self.report.table

    @property
    def markdown(self) -> str:
        return self.report.markdown

    @property
    def paths(self) -> dict[str, Path]:
        return self.report.paths

    @property
    def missing(self) -> list[str]:
        """Cells not done yet, left out of the report."""
        return self.report.missing

    def to_dict(self) -> list[dict[str, Any]]:
        return jsonable(self.table.to_dict(orient="records"))


def report(sweep_dir: str | Path, out: str | Path | None = None) -> ReportResult:
    """Write results.parquet, table.md/.csv and plots of a sweep folder (default out: SWEEP_DIR/report);
    the sweep's kind builds it (an LLM sweep's has its BBQ tables and plot)."""
    # The sweep (pandas, matplotlib) loads only when a report is built, not on `import kdfair_cli.api`.
    from kdfair_cli.sweep.kinds import DEFAULT_KIND, sweep_kind
    from kdfair_cli.sweep.runner import read_sweep_json

    kind = sweep_kind(read_sweep_json(Path(sweep_dir)).get("kind", DEFAULT_KIND))
    return ReportResult(kind.report(Path(sweep_dir), out))
