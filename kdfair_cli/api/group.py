"""Group fairness (DPD, EOD) of one or several prediction sets (seeds), per protected attribute."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kdfair_cli.api._stats import mean_std
from kdfair_cli.api.predictions import PredictionsLike, read_many
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.align import check_same_source, source_of
from kdfair_cli.io.predictions import Predictions
from kdfair_cli.jsonable import jsonable
from kdfair_cli.metrics.group import GroupFairness, bootstrap, encode_groups, percentile_ci
from kdfair_cli.metrics.group import group_fairness as _group_fairness

#: The headline values, each reported as the mean (and std) over files.
SUMMARY_KEYS = ("dpd", "eod", "tpr_diff", "fpr_diff")


def _group_records(res: GroupFairness) -> list[dict]:
    """Per-group breakdown: scalars (positive class) for binary, per-class lists otherwise."""
    binary = res.classes.size == 1
    pick = (lambda a: a[:, res.classes[0]]) if binary else (lambda a: a)  # noqa: E731
    sr, tpr, fpr = pick(res.selection_rate), pick(res.tpr), pick(res.fpr)
    return [{"group": g, "name": res.groups[g], "n": int(res.size[g]), "accuracy": res.accuracy[g],
             "selection_rate": sr[g], "tpr": tpr[g], "fpr": fpr[g]}
            for g in range(len(res.groups))]


@dataclass
class AttributeFairness:
    """One attribute's DPD/EOD over the files: `results[i]` belongs to `paths[i]`.

    `to_dict()` is this attribute's block of `group-fairness --json`. Later analyses (a noise
    floor, a paired comparison) add fields here and their keys to the end of that block, so the
    block grows without changing shape.
    """

    name: str
    paths: list[str]
    results: list[GroupFairness]
    class_names: list[str]
    eod_agg: str
    warnings: list[str]
    boot: list[dict[str, np.ndarray]] | None = None
    confidence: float = 0.95
    n_boot: int = 0
    seed: int = 0
    summary: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.summary = {}
        for key in SUMMARY_KEYS:
            self.summary[key], self.summary[key + "_std"] = mean_std(
                [getattr(r, key) for r in self.results])

    @property
    def binary(self) -> bool:
        return self.results[0].classes.size == 1

    def ci(self) -> dict[str, Any] | None:
        """Percentile intervals of the mean over files (bootstrap replicates averaged)."""
        if self.boot is None:
            return None
        reps = {k: np.mean(np.stack([rep[k] for rep in self.boot]), axis=0) for k in SUMMARY_KEYS}
        return {"confidence": self.confidence, "n_boot": self.n_boot, "seed": self.seed,
                **{k: percentile_ci(reps[k], self.confidence) for k in SUMMARY_KEYS}}

    def to_dict(self) -> dict[str, Any]:
        first = self.results[0]
        files = [{"path": p, **{k: getattr(r, k) for k in SUMMARY_KEYS}, "groups": _group_records(r)}
                 for p, r in zip(self.paths, self.results)]
        out: dict[str, Any] = {
            **self.summary,
            "n_files": len(self.results), "eod_agg": self.eod_agg,
            "task": "binary" if self.binary else "multiclass",
            "positive_class": int(first.classes[0]) if self.binary else None,
        }
        if len(self.results) == 1:
            out["groups"] = _group_records(first)
        out.update({
            "per_class": [{"class": int(k), "name": self.class_names[k], "dpd": first.dpd_per_class[k],
                           "eod": first.eod_per_class[k], "tpr_diff": first.tpr_diff_per_class[k],
                           "fpr_diff": first.fpr_diff_per_class[k]} for k in first.classes],
            "files": files,
            "warnings": self.warnings,
        })
        if self.boot is not None:
            out["ci"] = self.ci()
            for f, rep in zip(files, self.boot):
                f["ci"] = {k: percentile_ci(rep[k], self.confidence) for k in SUMMARY_KEYS}
        return jsonable(out)

    def rows(self) -> dict[str, np.ndarray]:
        """Long table (file, attribute, group, class): every one-vs-rest rate that was used."""
        parts = []
        for path, res in zip(self.paths, self.results):
            g, c = len(res.groups), res.classes.size
            gi, ci = np.repeat(np.arange(g), c), np.tile(res.classes, g)
            parts.append({"file": np.full(g * c, path, dtype=object),
                          "attribute": np.full(g * c, self.name, dtype=object),
                          "group": gi, "group_name": np.asarray(res.groups, dtype=object)[gi],
                          "class": ci, "n": res.size[gi], "selection_rate": res.selection_rate[gi, ci],
                          "tpr": res.tpr[gi, ci], "fpr": res.fpr[gi, ci]})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass
class GroupFairnessResult:
    """DPD and EOD per attribute; `to_dict()` is exactly what `group-fairness --json` prints."""

    attributes: dict[str, AttributeFairness]

    def __getitem__(self, name: str) -> AttributeFairness:
        return self.attributes[name]

    def to_dict(self) -> dict[str, Any]:
        return {name: a.to_dict() for name, a in self.attributes.items()}

    def rows(self) -> dict[str, np.ndarray]:
        """The long table of every attribute (what `-o` writes)."""
        parts = [a.rows() for a in self.attributes.values()]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def summary(self) -> dict[str, dict[str, float]]:
        """attribute -> {dpd, eod, tpr_diff, fpr_diff} (means over files)."""
        return {name: {k: a.summary[k] for k in SUMMARY_KEYS} for name, a in self.attributes.items()}


def _attribute_names(files: list[Predictions], wanted: Sequence[str] | None, prefix: str) -> list[str]:
    names = list(wanted) if wanted else sorted(files[0].attrs)
    if not names:
        raise KdfairError(f"{files[0].path}: no attribute columns ('{prefix}<name>'); add them or "
                          "use --attr-prefix")
    for p in files:
        for name in names:
            if name not in p.attrs:
                have = ", ".join(sorted(p.attrs)) or "none"
                raise KdfairError(f"{p.path}: unknown attribute '{name}' (no column "
                                  f"'{prefix}{name}'); attributes in the file: {have}")
    return names


def _evaluate(p: Predictions, name: str, positive_class: int, eod_agg: str, n_boot: int,
              seed: int) -> tuple[GroupFairness, dict[str, np.ndarray] | None]:
    try:
        codes, groups = encode_groups(p.attrs[name], p.attribute_values(name))
    except ValueError as exc:
        raise KdfairError(f"{p.path}: attribute '{name}': {exc}") from None
    res = _group_fairness(p.label, p.pred, codes, groups, p.num_classes,
                          positive_class=positive_class, eod_agg=eod_agg)
    reps = None
    if n_boot:
        reps = bootstrap(p.label, p.pred, codes, len(groups), p.num_classes, res.classes,
                         n_boot=n_boot, seed=seed, eod_agg=eod_agg)
    return res, reps


def group_fairness(preds: PredictionsLike | Sequence[PredictionsLike], attributes: Sequence[str] | None = None,
                   *, positive_class: int = 1, eod_agg: str = "worst", n_boot: int = 0,
                   confidence: float = 0.95, seed: int = 0, label_col: str = "label",
                   pred_col: str = "pred", id_col: str = "sample_id",
                   attr_prefix: str = "attr_") -> GroupFairnessResult:
    """DPD and EOD per protected attribute of one predictions set, or the mean over several (seeds).

    `preds` is a path, DataFrame or dict of arrays, or a list of them; `attributes` defaults to
    every attr_* column. With n_boot > 0, percentile bootstrap intervals (file i uses seed + i).
    """
    if n_boot < 0:
        raise KdfairError(f"--bootstrap must be >= 0, got {n_boot}")
    if not 0 < confidence < 1:
        raise KdfairError(f"--confidence must be in (0, 1), got {confidence}")
    if eod_agg not in ("worst", "mean"):
        raise KdfairError(f"--eod-agg '{eod_agg}': expected worst or mean")
    runs = read_many(preds, "predictions", label_col=label_col, pred_col=pred_col, id_col=id_col,
                     attr_prefix=attr_prefix, with_logits=False, need_label=True)
    ref = runs[0]
    for p in runs[1:]:
        check_same_source(ref.path, {"num_classes": ref.num_classes}, p.path,
                          {"num_classes": p.num_classes})
    if ref.num_classes == 2 and positive_class not in (0, 1):
        raise KdfairError(f"--positive-class must be 0 or 1 for a binary task, got {positive_class}")
    out: dict[str, AttributeFairness] = {}
    for name in _attribute_names(runs, attributes, attr_prefix):
        evaluated = [_evaluate(p, name, positive_class, eod_agg, n_boot, seed + i)
                     for i, p in enumerate(runs)]
        results = [r for r, _ in evaluated]
        warnings = sorted({f"{p.path}: {w}" for p, r in zip(runs, results) for w in r.warnings})
        out[name] = AttributeFairness(
            name, [p.path for p in runs], results, ref.class_names, eod_agg, warnings,
            [rep for _, rep in evaluated] if n_boot else None, confidence, n_boot, seed)
    return GroupFairnessResult(out)
