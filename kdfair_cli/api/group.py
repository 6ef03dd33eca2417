"""Group fairness (DPD, EOD) of one or several prediction sets (seeds), per protected attribute."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kdfair_cli.api._compare import PAIRED, SideComparison, compare, pairing
from kdfair_cli.api._stats import mean_std
from kdfair_cli.api.predictions import PredictionsLike, read_many
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.align import check_same_source, same_samples, source_of
from kdfair_cli.io.predictions import Predictions
from kdfair_cli.jsonable import jsonable
from kdfair_cli.metrics.excess import floor_from_cells
from kdfair_cli.metrics.group import GroupFairness, bootstrap, encode_groups, percentile_ci
from kdfair_cli.metrics.group import group_fairness as _group_fairness
from kdfair_cli.metrics.null import NullDraws, NullTest, null_draws, null_test
from kdfair_cli.metrics.paired import paired_group

#: The null's permutation as the CLI names it -> metrics.null's `stratify`.
NULL_PERMUTATIONS = {"within-label": "label", "unconditional": "none"}
_PERMUTATION_NAMES = {v: k for k, v in NULL_PERMUTATIONS.items()}
#: A value whose one-sided p is above this is reported as within its noise floor.
FLOOR_ALPHA = 0.05
#: The metrics that get a noise floor and a paired comparison.
TESTED = ("dpd", "eod")

#: The headline values, each reported as the mean (and std) over files.
SUMMARY_KEYS = ("dpd", "eod", "tpr_diff", "fpr_diff")
#: What --versus compares: the excess (metric minus its own floor) first, then the raw values.
COMPARED = ("excess_dpd", "excess_eod", "dpd", "eod")
#: What the raw delta_dpd / delta_eod of --versus mean (JSON `delta_raw_note`).
RAW_DELTA_NOTE = ("delta_dpd and delta_eod compare the raw values: a less accurate model has a "
                  "higher noise floor, so they differ also when only the accuracy does; "
                  "delta_excess_dpd and delta_excess_eod compare the disparity beyond each "
                  "model's floor")
#: Why the unconditional null gives EOD no p-value (JSON `eod_p_note`, the human output).
UNCONDITIONAL_EOD_NOTE = ("no EOD p under the unconditional null: permuting the attribute across "
                          "labels moves the groups' base rates, which EOD conditions on, so the "
                          "test is not valid when base rates differ; use --null-permutation "
                          "within-label")


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
    null: list[NullDraws] | None = None  # per file (file i drawn with seed + i)
    versus_paths: list[str] | None = None
    versus: dict[str, SideComparison] | None = None  # COMPARED keys: A (paths) minus B (versus_paths)
    floors: list[dict[str, float]] = field(default_factory=list)  # per file: "dpd", "eod" floor means
    summary: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.summary = {}
        for key in SUMMARY_KEYS:
            self.summary[key], self.summary[key + "_std"] = mean_std(
                [getattr(r, key) for r in self.results])
        for key in TESTED if self.floors else ():
            self.summary[key + "_floor"] = mean_std([f[key] for f in self.floors])[0]
            self.summary[key + "_excess"], self.summary[key + "_excess_std"] = mean_std(
                [self.excess(i, key) for i in range(len(self.results))])

    def excess(self, i: int, key: str) -> float:
        """File i's DPD or EOD minus its floor (metrics.excess)."""
        return getattr(self.results[i], key) - self.floors[i][key]

    def p_valid(self, key: str) -> bool:
        """Whether the null's p of `key` is a valid test (not EOD under the unconditional null)."""
        return not (key == "eod" and self.null_permutation == "unconditional")

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

    @property
    def null_permutation(self) -> str | None:
        """How the null was drawn, as --null-permutation names it (None without a null)."""
        return None if self.null is None else _PERMUTATION_NAMES[self.null[0].stratify]

    def floor(self, key: str) -> NullTest | None:
        """The reported value (mean over files) against its null: the mean of the files' draws.

        File i's draws come from its own seed, so the mean of one draw per file is a draw of the
        mean over files under the null for every file at once.
        """
        if self.null is None:
            return None
        draws = np.mean(np.stack([getattr(d, key) for d in self.null]), axis=0)
        return null_test(self.summary[key], draws)

    def file_floor(self, i: int, key: str) -> NullTest | None:
        """File i's value against its own null draws."""
        if self.null is None:
            return None
        return null_test(getattr(self.results[i], key), getattr(self.null[i], key))

    def class_floor(self, key: str) -> NullTest | None:
        """Per-class values of the first file against their null draws (arrays over `classes`)."""
        if self.null is None:
            return None
        first = self.results[0]
        return null_test(getattr(first, key + "_per_class")[first.classes],
                         getattr(self.null[0], key + "_per_class")[:, first.classes])

    def within_floor(self) -> list[str]:
        """One line per value (DPD, EOD of the mean over files) that is not above its floor."""
        lines = []
        for key in TESTED:
            t = self.floor(key)
            if t is not None and self.p_valid(key) and not np.isnan(t.p) and t.p > FLOOR_ALPHA:
                lines.append(f"{key.upper()} {100 * t.observed:.1f}% is within the noise floor (null "
                             f"mean {100 * t.null_mean:.1f}%, p = {t.p:.2f}): no evidence of disparity")
        return lines

    def _floor_keys(self, test: NullTest | None, key: str, i: int | None = None) -> dict[str, Any]:
        if test is None:
            return {}
        pick = (lambda v: v) if i is None else (lambda v: v[i])  # noqa: E731
        out = {f"{key}_null_mean": pick(test.null_mean), f"{key}_null_q95": pick(test.null_q95),
               f"{key}_p": pick(test.p) if self.p_valid(key) else None}
        if not self.p_valid(key):
            out[f"{key}_p_note"] = UNCONDITIONAL_EOD_NOTE
        return out

    def _excess_keys(self, i: int | None = None) -> dict[str, Any]:
        """{dpd,eod}_floor and {dpd,eod}_excess of file i, or of the mean over files."""
        if not self.floors:
            return {}
        if i is None:
            return {f"{key}_{what}": self.summary[f"{key}_{what}"]
                    for key in TESTED for what in ("floor", "excess")}
        return {k: v for key in TESTED
                for k, v in ((f"{key}_floor", self.floors[i][key]), (f"{key}_excess", self.excess(i, key)))}

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
        out.update(self._excess_keys())
        if len(self.results) == 1:
            out["groups"] = _group_records(first)
        out.update({
            "per_class": [{"class": int(k), "name": self.class_names[k], "dpd": first.dpd_per_class[k],
                           "eod": first.eod_per_class[k], "tpr_diff": first.tpr_diff_per_class[k],
                           "fpr_diff": first.fpr_diff_per_class[k]} for k in first.classes],
            "files": files,
            "warnings": self.warnings,
        })
        for i, f in enumerate(files):
            f.update(self._excess_keys(i))
        if self.boot is not None:
            out["ci"] = self.ci()
            for f, rep in zip(files, self.boot):
                f["ci"] = {k: percentile_ci(rep[k], self.confidence) for k in SUMMARY_KEYS}
        if self.null is not None:
            for key in TESTED:
                out.update(self._floor_keys(self.floor(key), key))
            out["null_draws"] = self.null[0].dpd.size
            out["null_permutation"] = self.null_permutation
            out["null_seed"] = self.seed
            for i, f in enumerate(files):
                for key in TESTED:
                    f.update(self._floor_keys(self.file_floor(i, key), key))
            for key in TESTED:
                test = self.class_floor(key)
                for j, entry in enumerate(out["per_class"]):
                    entry.update(self._floor_keys(test, key, j))
        if self.versus is not None:
            out["versus"] = self.versus_paths
            out["delta_test"] = self.versus["dpd"].test
            for key in COMPARED:
                out.update(self.versus[key].keys(key))
            out["delta_raw_note"] = RAW_DELTA_NOTE
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


def _codes(p: Predictions, name: str) -> tuple[np.ndarray, list[str]]:
    try:
        return encode_groups(p.attrs[name], p.attribute_values(name))
    except ValueError as exc:
        raise KdfairError(f"{p.path}: attribute '{name}': {exc}") from None


def _evaluate(p: Predictions, name: str, positive_class: int, eod_agg: str, n_boot: int,
              seed: int) -> tuple[GroupFairness, dict[str, np.ndarray] | None]:
    codes, groups = _codes(p, name)
    res = _group_fairness(p.label, p.pred, codes, groups, p.num_classes,
                          positive_class=positive_class, eod_agg=eod_agg)
    reps = None
    if n_boot:
        reps = bootstrap(p.label, p.pred, codes, len(groups), p.num_classes, res.classes,
                         n_boot=n_boot, seed=seed, eod_agg=eod_agg, cells=res.cells)
    return res, reps


def _aligned(runs: list[Predictions], others: list[Predictions]) -> list[Predictions]:
    """The --versus files, each reordered to the rows of the first file of A; same samples only."""
    ref = runs[0]
    out = []
    for o in others:
        check_same_source(ref.path, source_of(ref.meta, ref.num_classes), o.path,
                          source_of(o.meta, o.num_classes), " (--versus needs the same samples)")
        rows = same_samples(ref.sample_id, o.sample_id, ref=ref.path, other=o.path)
        if not np.array_equal(o.label[rows], ref.label):
            raise KdfairError(f"{o.path}: column label differs from {ref.path} on the same sample ids; "
                              "--versus needs predictions of the same samples")
        out.append(o)
    for p in runs[1:]:
        same_samples(ref.sample_id, p.sample_id, ref=ref.path, other=p.path)
    return out


def _floors(results: list[GroupFairness], eod_agg: str, stratify: str) -> list[dict[str, float]]:
    """Each file's DPD and EOD floor means (metrics.excess)."""
    return [{k: float(v[0]) for k, v in floor_from_cells(r.cells, r.classes, eod_agg=eod_agg,
                                                         stratify=stratify).items()}
            for r in results]


def _versus(name: str, runs: list[Predictions], others: list[Predictions], a_res: list[GroupFairness],
            positive_class: int, eod_agg: str, n_perm: int, n_boot: int, confidence: float,
            seed: int, a_floors: list[dict[str, float]], stratify: str) -> dict[str, SideComparison]:
    """Δ (A minus B) of the excess and the raw DPD and EOD, attribute `name` as A's files record it."""
    b_res = [_evaluate(o, name, positive_class, eod_agg, 0, 0)[0] for o in others]
    b_floors = _floors(b_res, eod_agg, stratify)
    values = {key: ([getattr(r, key) for r in a_res], [getattr(r, key) for r in b_res]) for key in TESTED}
    values.update({f"excess_{key}": ([getattr(r, key) - f[key] for r, f in zip(a_res, a_floors)],
                                     [getattr(r, key) - f[key] for r, f in zip(b_res, b_floors)])
                   for key in TESTED})
    per_seed = None
    if pairing(len(runs), len(others)) == PAIRED:
        per_seed = []
        for i, (pa, pb, ra) in enumerate(zip(runs, others, a_res)):
            codes, groups = _codes(pa, name)
            rows = same_samples(pa.sample_id, pb.sample_id, ref=pa.path, other=pb.path)
            per_seed.append(paired_group(pa.label, pa.pred, pb.pred[rows], codes, len(groups),
                                         pa.num_classes, ra.classes, n_perm=n_perm, n_boot=n_boot,
                                         seed=seed + i, eod_agg=eod_agg, confidence=confidence,
                                         stratify=stratify))
    return {key: compare(*values[key], [c[key] for c in per_seed] if per_seed is not None else None)
            for key in COMPARED}


def group_fairness(preds: PredictionsLike | Sequence[PredictionsLike], attributes: Sequence[str] | None = None,
                   *, positive_class: int = 1, eod_agg: str = "worst", n_boot: int = 0,
                   confidence: float = 0.95, seed: int = 0, null: int = 1000,
                   null_permutation: str = "within-label",
                   versus: PredictionsLike | Sequence[PredictionsLike] | None = None,
                   label_col: str = "label", pred_col: str = "pred", id_col: str = "sample_id",
                   attr_prefix: str = "attr_") -> GroupFairnessResult:
    """DPD and EOD per protected attribute of one predictions set, or the mean over several (seeds).

    `preds` is a path, DataFrame or dict of arrays, or a list of them; `attributes` defaults to
    every attr_* column. With n_boot > 0, percentile bootstrap intervals (file i uses seed + i).
    `null` draws (0 = none) give each DPD and EOD its noise floor and one-sided p under the
    `null_permutation` ("within-label": Ŷ ⊥ A | Y, or "unconditional": Ŷ ⊥ A; EOD gets no p
    under the latter). Every DPD and EOD also gets its excess: the value minus its floor mean,
    the expected value of a model with the same per-label confusion that ignores the group
    (metrics.excess; the DPD floor stratified as `null_permutation`). `versus` (other
    predictions of the same samples) adds, A minus B, the difference of the excesses (paired
    bootstrap that recomputes both floors, n_boot or 1000 replicates: valid when A and B differ
    in accuracy) and of the raw DPD and EOD (paired permutation test of `null` or 1000 draws
    and a bootstrap interval). See docs/metrics.md.
    """
    if n_boot < 0:
        raise KdfairError(f"--bootstrap must be >= 0, got {n_boot}")
    if null < 0:
        raise KdfairError(f"--null must be >= 0 (0 = no noise floor), got {null}")
    if null_permutation not in NULL_PERMUTATIONS:
        raise KdfairError(f"--null-permutation '{null_permutation}': expected "
                          f"{' or '.join(NULL_PERMUTATIONS)}")
    if not 0 < confidence < 1:
        raise KdfairError(f"--confidence must be in (0, 1), got {confidence}")
    if eod_agg not in ("worst", "mean"):
        raise KdfairError(f"--eod-agg '{eod_agg}': expected worst or mean")
    read = dict(label_col=label_col, pred_col=pred_col, id_col=id_col, attr_prefix=attr_prefix,
                with_logits=False, need_label=True)
    runs = read_many(preds, "predictions", **read)
    ref = runs[0]
    for p in runs[1:]:
        check_same_source(ref.path, {"num_classes": ref.num_classes}, p.path,
                          {"num_classes": p.num_classes})
    others = None
    if versus is not None:
        others = _aligned(runs, read_many(versus, "versus", **read))
        pairing(len(runs), len(others))
    if ref.num_classes == 2 and positive_class not in (0, 1):
        raise KdfairError(f"--positive-class must be 0 or 1 for a binary task, got {positive_class}")
    names = _attribute_names(runs + (others or []), attributes, attr_prefix)
    out: dict[str, AttributeFairness] = {}
    for name in names:
        evaluated = [_evaluate(p, name, positive_class, eod_agg, n_boot, seed + i)
                     for i, p in enumerate(runs)]
        results = [r for r, _ in evaluated]
        warnings = sorted({f"{p.path}: {w}" for p, r in zip(runs, results) for w in r.warnings})
        stratify = NULL_PERMUTATIONS[null_permutation]
        floors = _floors(results, eod_agg, stratify)
        draws = None
        if null:
            draws = [null_draws(r.cells, r.classes, n_draws=null, seed=seed + i, eod_agg=eod_agg,
                                stratify=NULL_PERMUTATIONS[null_permutation])
                     for i, r in enumerate(results)]
        cmp = None
        if others is not None:
            cmp = _versus(name, runs, others, results, positive_class, eod_agg, null or 1000,
                          n_boot or 1000, confidence, seed, floors, stratify)
        out[name] = AttributeFairness(
            name, [p.path for p in runs], results, ref.class_names, eod_agg, warnings,
            [rep for _, rep in evaluated] if n_boot else None, confidence, n_boot, seed, draws,
            [o.path for o in others] if others is not None else None, cmp, floors)
    return GroupFairnessResult(out)
