"""The sweep's analyses: calls into kdfair_cli.api, the same functions the metric commands use.

A cell therefore computes exactly what a user running `kdfair group-fairness ... --json` by
hand gets, without going through the command line. Each function returns the small summary a
cell records in its metrics.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdfair_cli.api import classes, group, individual
from kdfair_cli.api.pairs import pairs as pair_set


def make_pairs(out: Path, *, dataset: str, data: Path, split: str, source: str, k: int,
               attribute: str | None) -> None:
    """Build the sweep's pair set once and write it to `out`."""
    pair_set(dataset=dataset, data=data, split=split, source=source, k=k,
              attribute=attribute).write(out)


#: The statistics of a fair-<model> cell: part of its hash, so changing them reruns exactly the
#: analysis cells. null: draws of the noise floor (within-label permutation); n_boot: bootstrap
#: replicates of the individual-fairness interval; seed: of both; excess: the version of the
#: excess disparity's floor (metrics.excess), so that sweeps made before it redo their fair cells.
TESTS: dict[str, Any] = {"null": 1000, "null_permutation": "within-label", "n_boot": 1000, "seed": 0,
                         "excess": 1}
#: The keys of `group-fairness --json` a fair cell keeps per attribute (fractions; p as is).
GROUP_KEYS = ("eod", "dpd", "eod_null_mean", "eod_null_q95", "eod_p", "dpd_null_mean",
              "dpd_null_q95", "dpd_p", "eod_floor", "eod_excess", "dpd_floor", "dpd_excess")


def group_fairness(preds: Path, attributes: list[str], tests: dict[str, Any]) -> dict[str, dict[str, float]]:
    """attribute -> {eod, dpd, their null mean, null q95 and p} of one predictions file."""
    doc = group.group_fairness(str(preds), attributes, null=tests["null"],
                             null_permutation=tests["null_permutation"], seed=tests["seed"]).to_dict()
    return {a: {k: doc[a][k] for k in GROUP_KEYS if k in doc[a]} for a in attributes}


def individual_fairness(preds: Path, pairs: Path, tests: dict[str, Any]) -> dict[str, Any]:
    """I(f) of one predictions file with its bootstrap-over-pairs interval."""
    doc = individual.individual_fairness(str(preds), str(pairs), n_boot=tests["n_boot"], seed=tests["seed"]).to_dict()
    return {"score": doc["score"], "n_pairs": doc["n_pairs"], "ci": doc.get("score_ci")}


def compare_classes(a: list[Path], b: list[Path]) -> dict[str, Any]:
    res = classes.compare_classes([str(p) for p in a], [str(p) for p in b])
    return {"n_significant": res.n_significant, "n_classes": res.num_classes,
            "test": res.comparison.test}
