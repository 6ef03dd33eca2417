"""The sweep's analyses: calls into kdfair_cli.api, the same functions the metric commands use.

A cell therefore computes exactly what a user running `kdfair group-fairness ... --json` by
hand gets, without going through the command line. Each function returns the small summary a
cell records in its metrics.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdfair_cli import api


def make_pairs(out: Path, *, dataset: str, data: Path, split: str, source: str, k: int,
               attribute: str | None) -> None:
    """Build the sweep's pair set once and write it to `out`."""
    api.pairs(dataset=dataset, data=data, split=split, source=source, k=k,
              attribute=attribute).write(out)


def group_fairness(preds: Path, attributes: list[str]) -> dict[str, dict[str, float]]:
    """attribute -> {"eod": fraction, "dpd": fraction} of one predictions file."""
    summary = api.group_fairness(str(preds), attributes).summary()
    return {a: {"eod": summary[a]["eod"], "dpd": summary[a]["dpd"]} for a in attributes}


def individual_fairness(preds: Path, pairs: Path) -> dict[str, float]:
    res = api.individual_fairness(str(preds), str(pairs))
    return {"score": float(res.results[0].score), "n_pairs": int(res.results[0].n_pairs)}


def compare_classes(a: list[Path], b: list[Path]) -> dict[str, Any]:
    res = api.compare_classes([str(p) for p in a], [str(p) for p in b])
    return {"n_significant": res.n_significant, "n_classes": res.num_classes,
            "test": res.comparison.test}
