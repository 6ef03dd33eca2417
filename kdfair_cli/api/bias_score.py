"""BBQ bias scores of one model (several runs: seeds or prompt templates) and, optionally, a
paired comparison with another model on the same items, plus the items whose answer flips.

`bias_score(["preds/teacher.parquet"], versus=["preds/ds.parquet"])` returns a BiasScore;
`.to_dict()` is what `kdfair bias-score --json` prints. Inputs are predictions files or pandas
DataFrames with the same columns (label, pred or logits, sample_id, attr_category,
attr_question_polarity, attr_context_condition, attr_role_0..2; text columns attr_context,
attr_question, attr_ans0..2 are carried into the flips table when present).
"""

from __future__ import annotations

import json
import re

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdfair_cli.errors import KdfairError
from kdfair_cli.io.predictions import read_predictions
from kdfair_cli.metrics import bbq as m

Source = str | Path | pd.DataFrame
REQUIRED_ATTRS = ("category", "question_polarity", "context_condition", "role_0", "role_1", "role_2")
TEXT_ATTRS = ("context", "question", "ans0", "ans1", "ans2")
OVERALL = "overall"
#: How an answer a generation audit could not read (pred -1) enters each score (metrics.bbq).
UNPARSED_RULE = ("an unparsed answer (pred -1) counts as a wrong answer in acc_ambig / acc_disambig and "
                 "names nobody: it is left out of s_DIS's and s_AMB's n_biased and n_non_unknown, and "
                 "raises s_AMB's (1 - acc_ambig) factor")


#: Caps of the resampling options (docs/llm.md): far above what the intervals and p-values need.
MAX_BOOTSTRAP = 100_000
MAX_PERMUTATIONS = 1_000_000


@dataclass
class BBQRun:
    """One predictions file, rows sorted by sample_id, attributes decoded."""

    name: str
    sample_id: np.ndarray
    label: np.ndarray
    pred: np.ndarray
    attrs: dict[str, np.ndarray]
    roles: np.ndarray  # int [N, 3], metrics.bbq role codes
    prompt: dict[str, Any] = field(default_factory=dict)  # how the answers were scored (prompt_identity)

    @property
    def neg(self) -> np.ndarray:
        return self.attrs["question_polarity"] == "neg"

    @property
    def ambig(self) -> np.ndarray:
        return self.attrs["context_condition"] == "ambig"


def _frame_arrays(df: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict, dict]:
    if "label" not in df.columns:
        raise KdfairError(f"{name}: missing column 'label'")
    if "pred" in df.columns:
        pred = df["pred"].to_numpy().astype(np.int64)
    elif "logits" in df.columns:
        pred = np.argmax(np.stack(df["logits"].to_numpy()), axis=1)
    else:
        raise KdfairError(f"{name}: needs a 'pred' or 'logits' column")
    sid = df["sample_id"].to_numpy().astype(np.int64) if "sample_id" in df.columns else np.arange(len(df))
    attrs = {c[5:]: df[c].to_numpy() for c in df.columns if c.startswith("attr_")}
    return sid, df["label"].to_numpy().astype(np.int64), pred, attrs, dict(df.attrs.get("kdfair", {}))


def load_run(source: Source, index: int = 0) -> BBQRun:
    """Read one BBQ predictions file (or DataFrame); KdfairError if it is not one."""
    if isinstance(source, pd.DataFrame):
        name = f"<DataFrame {index}>"
        sid, label, pred, attrs, meta = _frame_arrays(source, name)
    else:
        p = read_predictions(source, with_features=False)
        if p.label is None:
            raise KdfairError(f"{p.path}: column 'label' has no values; bias-score needs BBQ's labels")
        name, sid, label, pred, attrs, meta = p.path, p.sample_id, p.label, p.pred, p.attrs, p.meta
    dataset = meta.get("dataset")
    if dataset is not None and dataset != "bbq":
        raise KdfairError(f"{name} holds predictions on dataset '{dataset}', not bbq; bias-score needs "
                          "`kdfair predict MODEL --dataset bbq` or `kdfair import lm-eval` output")
    missing = [f"attr_{a}" for a in REQUIRED_ATTRS if a not in attrs]
    if missing:
        raise KdfairError(f"{name} is not a BBQ predictions file: missing column(s) {', '.join(missing)}")
    attrs = {k: (v.astype(str) if k in REQUIRED_ATTRS + ("label_role",) + TEXT_ATTRS else v)
             for k, v in attrs.items()}
    for col, allowed in (("question_polarity", ("neg", "nonneg")), ("context_condition", ("ambig", "disambig"))):
        bad = ~np.isin(attrs[col], allowed)
        if bad.any():
            raise KdfairError(f"{name}: column 'attr_{col}' has value {attrs[col][bad][0]!r}; "
                              f"expected {' or '.join(allowed)}")
    roles = np.full((len(pred), 3), m.UNDETERMINED, dtype=np.int64)
    for k in range(3):
        values = attrs[f"role_{k}"]
        bad = ~np.isin(values, list(m.ROLE_CODES))
        if bad.any():
            raise KdfairError(f"{name}: column 'attr_role_{k}' has value {values[bad][0]!r}; expected "
                              f"one of {', '.join(m.ROLE_CODES)}")
        for role, code in m.ROLE_CODES.items():
            roles[values == role, k] = code
    lowest = -1 if (meta.get("generation") or {}).get("unparsed_pred") == -1 else 0  # kdfair generate
    if len(pred) and (pred.min() < lowest or pred.max() > 2 or label.min() < 0 or label.max() > 2):
        raise KdfairError(f"{name}: BBQ answers are options 0, 1, 2; found others in pred or label")
    order = np.argsort(sid, kind="stable")
    return BBQRun(name, sid[order], label[order], pred[order], {k: v[order] for k, v in attrs.items()},
                  roles[order], prompt_identity(meta))


def prompt_identity(meta: dict[str, Any]) -> dict[str, Any]:
    """What decides a file's answers besides the model: the prompt template (kdfair's, or the
    lm-eval task's doc_to_text), the continuation, how option log-likelihoods are scored, the
    unknown option's mode and few-shot count. Empty when the file records none (bring-your-own)."""
    lm = meta.get("lm") if isinstance(meta.get("lm"), dict) else {}
    if not lm:
        return {}
    harness = lm.get("lm_eval") if isinstance(lm.get("lm_eval"), dict) else {}
    return {"template": lm.get("template", harness.get("doc_to_text")),
            "continuation": (lm["continuation"].replace("{option}", "") if isinstance(lm.get("continuation"), str)
                             else harness.get("target_delimiter")),  # what joins prompt and option
            "scoring": lm.get("scoring"), "unknown": lm.get("unknown"),
            "num_fewshot": harness.get("num_fewshot", 0 if "template" in lm else None)}


def prompt_differences(a: list[BBQRun], b: list[BBQRun]) -> list[str]:
    """The settings on which the two sides' files differ (only those both record)."""
    def values(runs: list[BBQRun], k: str) -> set[str]:
        got = [r.prompt.get(k) for r in runs if r.prompt.get(k) is not None]
        if k == "template":  # lm-eval's {{ field }} and kdfair's {field} are the same prompt
            got = [re.sub(r"\{\{\s*(\w+)\s*\}\}", r"{\1}", str(t)) for t in got]
        return {json.dumps(v) for v in got}

    return [k for k in ("template", "continuation", "scoring", "unknown", "num_fewshot")
            if (va := values(a, k)) and (vb := values(b, k)) and va != vb]


def _check_same_items(runs: list[BBQRun]) -> None:
    ref = runs[0]
    for r in runs[1:]:
        if not np.array_equal(r.sample_id, ref.sample_id):
            raise KdfairError(f"{r.name} and {ref.name} hold different BBQ items ({len(r.sample_id)} vs "
                              f"{len(ref.sample_id)} rows, or other sample ids); score the same items")
        for col in ("category", "context_condition", "question_polarity"):
            if not np.array_equal(r.attrs[col], ref.attrs[col]):
                raise KdfairError(f"{r.name} and {ref.name} disagree on attr_{col}: not the same items")
        if not np.array_equal(r.label, ref.label) or not np.array_equal(r.roles, ref.roles):
            raise KdfairError(f"{r.name} and {ref.name} disagree on labels or answer roles of the "
                              "same items")


@dataclass
class BiasScore:
    """Scores per category and overall (mean over runs), their spread, intervals and tests."""

    files: list[str]
    versus: list[str]
    categories: list[str]
    values: dict[str, dict[str, float]]  # slot -> metric -> value (mean over runs)
    std: dict[str, dict[str, float]]  # std over runs (ddof 1; NaN for one run)
    ci: dict[str, dict[str, list[float]]]
    n_undetermined: dict[str, int]
    n_unparsed: dict[str, float] = field(default_factory=dict)  # answers not read (pred -1), mean over runs
    floor: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # slot -> score -> floor, p
    versus_values: dict[str, dict[str, float]] = field(default_factory=dict)
    p_values: dict[str, dict[str, float]] = field(default_factory=dict)
    flips: pd.DataFrame | None = None
    unparsed_rule: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per category (and 'overall') the six BBQ keys, then spread and tests."""
        def slot(s: str) -> dict[str, Any]:
            out: dict[str, Any] = {k: _num(self.values[s][k]) for k in
                                   ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig")}
            out["n_ambig"] = int(self.values[s]["n_ambig"])
            out["n_disambig"] = int(self.values[s]["n_disambig"])
            out["n_undetermined"] = self.n_undetermined[s]
            out["n_unparsed"] = self.n_unparsed.get(s, 0.0)
            out["std"] = {k: _num(v) for k, v in self.std[s].items()}
            out["ci"] = {k: [_num(x) for x in v] for k, v in self.ci[s].items()}
            out["floor"] = {k: {"floor": _num(v["floor"]), "p": _num(v["p"])} for k, v in self.floor[s].items()}
            if self.versus:
                out["versus"] = {k: {"value": _num(self.versus_values[s][k]),
                                     "difference": _num(self.values[s][k] - self.versus_values[s][k]),
                                     "p_value": _num(self.p_values[s][k])} for k in m.METRICS}
            return out

        result: dict[str, Any] = {"files": self.files, "versus": self.versus or None, **self.settings,
                                  "unparsed_rule": self.unparsed_rule,
                                  "categories": {c: slot(c) for c in self.categories},
                                  OVERALL: slot(OVERALL)}
        if self.flips is not None:
            result["flips"] = {"n_items": int(len(self.flips)),
                               "n_consistent": int(self.flips["consistent"].sum())}
        return result

    def table(self) -> pd.DataFrame:
        """One row per (category, metric): value, std, CI and, with --versus, B, A - B and p."""
        rows = []
        for s in self.categories + [OVERALL]:
            for k in m.METRICS:
                row = {"category": s, "metric": k, "value": self.values[s][k], "std": self.std[s][k],
                       "ci_low": self.ci[s][k][0], "ci_high": self.ci[s][k][1],
                       "n": self.values[s]["n_ambig" if k.endswith("_ambig") else "n_disambig"],
                       "floor": self.floor[s].get(k, {}).get("floor", np.nan),
                       "floor_p": self.floor[s].get(k, {}).get("p", np.nan)}
                if self.versus:
                    row.update(versus=self.versus_values[s][k],
                               difference=self.values[s][k] - self.versus_values[s][k],
                               p_value=self.p_values[s][k])
                rows.append(row)
        return pd.DataFrame(rows)


def _num(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _features(runs: list[BBQRun], cat_codes: np.ndarray, n_cats: int) -> np.ndarray:
    """[R, N, C + 1, 8] per-item counts of each run, overall slot first."""
    return np.stack([m.grouped(m.item_counts(r.pred, r.label, r.roles, r.neg, r.ambig), cat_codes, n_cats)
                     for r in runs])


def _pair(a: list[BBQRun], b: list[BBQRun]) -> tuple[list[BBQRun], list[BBQRun]]:
    if len(a) == len(b):
        return a, b
    if len(a) == 1:
        return a * len(b), b
    if len(b) == 1:
        return a, b * len(a)
    raise KdfairError(f"got {len(a)} files and {len(b)} --versus files: give as many on each side "
                      "(run k is paired with run k) or one on either side")


def bias_score(files: list[Source], versus: list[Source] | None = None, *, n_boot: int = 1000,
               confidence: float = 0.95, n_perm: int = 10000, seed: int = 0) -> BiasScore:
    """BBQ accuracy and bias scores of `files` (runs of one model) per category and overall.

    Several files give the mean over runs and its std; bootstrap intervals resample items (the
    same resample for every run) and cover that mean. Each bias score also gets its noise floor
    (metrics.bbq.direction_floor, the runs' answers pooled): what it would be with no direction. `versus` (runs of another model on the
    same items) adds B's scores, A - B and a paired permutation p-value, and the flips table.
    """
    if not files:
        raise KdfairError("give at least one predictions file")
    if not 0 < confidence < 1:
        raise KdfairError(f"--confidence must be in (0, 1), got {confidence}")
    if n_boot < 0 or n_perm < 0:
        raise KdfairError("--bootstrap and --permutations must be >= 0")
    if n_boot > MAX_BOOTSTRAP:
        raise KdfairError(f"--bootstrap {n_boot}: at most {MAX_BOOTSTRAP} resamples (intervals settle long "
                          "before; the cap keeps a typo from running for hours)")
    if n_perm > MAX_PERMUTATIONS:
        raise KdfairError(f"--permutations {n_perm}: at most {MAX_PERMUTATIONS} (a p-value's resolution "
                          f"is 1/{MAX_PERMUTATIONS} already)")
    runs = [load_run(f, i) for i, f in enumerate(files)]
    others = [load_run(f, len(files) + i) for i, f in enumerate(versus or [])]
    _check_same_items(runs + others)
    ref = runs[0]
    categories, cat_codes = np.unique(ref.attrs["category"], return_inverse=True)
    slots = [OVERALL] + [str(c) for c in categories]
    feats = _features(runs, cat_codes, len(categories))
    per_run = m.scores(feats.sum(1))  # each [R, S]
    mean = m.mean_over_runs(per_run, axis=0)
    std = m.std_over_runs({k: per_run[k] for k in m.METRICS}, axis=0)
    rng = np.random.default_rng(seed)
    boot = m.bootstrap(feats, n_boot, rng) if n_boot else None
    alpha = (1 - confidence) / 2
    ci = {}
    for j, s in enumerate(slots):
        ci[s] = {}
        for k in m.METRICS:
            vals = boot[k][:, j] if boot is not None else np.zeros(0)
            vals = vals[np.isfinite(vals)]
            ci[s][k] = ([float(np.quantile(vals, alpha)), float(np.quantile(vals, 1 - alpha))]
                        if vals.size else [float("nan")] * 2)
    floor = m.direction_floor(feats.sum((0, 1)), confidence)  # the runs' answers pooled
    undetermined = (ref.roles == m.UNDETERMINED).any(1)
    n_und = {OVERALL: int(undetermined.sum())}
    n_und.update({str(c): int(undetermined[cat_codes == i].sum()) for i, c in enumerate(categories)})
    unparsed = np.stack([r.pred < 0 for r in runs]).mean(0)  # per item, the share of runs not read
    n_unp = {OVERALL: float(unparsed.sum())}
    n_unp.update({str(c): float(unparsed[cat_codes == i].sum()) for i, c in enumerate(categories)})
    result = BiasScore(
        n_unparsed=n_unp, unparsed_rule=UNPARSED_RULE if unparsed.any() else None,
        files=[r.name for r in runs], versus=[r.name for r in others], categories=slots[1:],
        values={s: {k: float(v[j]) for k, v in mean.items()} for j, s in enumerate(slots)},
        std={s: {k: float(std[k][j]) for k in m.METRICS} for j, s in enumerate(slots)},
        ci=ci, n_undetermined=n_und,
        floor={s: {k: {q: float(v[q][j]) for q in ("floor", "p")} for k, v in floor.items()}
               for j, s in enumerate(slots)},
        settings={"bootstrap": n_boot, "confidence": confidence, "seed": seed,
                  "permutations": n_perm if others else None,
                  "prompt_differs": prompt_differences(runs, others) if others else []})
    if others:
        pa, pb = _pair(runs, others)
        fa, fb = _features(pa, cat_codes, len(categories)), _features(pb, cat_codes, len(categories))
        observed, p = m.paired_permutation(fa, fb, n_perm, rng)
        vs = m.mean_over_runs(m.scores(_features(others, cat_codes, len(categories)).sum(1)), axis=0)
        result.versus_values = {s: {k: float(vs[k][j]) for k in m.METRICS} for j, s in enumerate(slots)}
        result.p_values = {s: {k: float(p[k][j]) for k in m.METRICS} for j, s in enumerate(slots)}
        result.flips = _flip_table(ref, pa, pb)
    return result


def _flip_table(ref: BBQRun, a: list[BBQRun], b: list[BBQRun]) -> pd.DataFrame:
    """Items whose answer differs between A and B in at least one pair of runs, with their text."""
    f = m.flips(np.stack([r.pred for r in a]), np.stack([r.pred for r in b]))
    keep = np.flatnonzero(f["flip_rate"] > 0)
    n = np.arange(len(ref.pred))
    role_names = {code: name for name, code in m.ROLE_CODES.items()}
    name_of = np.vectorize(lambda c: role_names[int(c)], otypes=[object])
    biased_role = np.where(ref.neg, m.TARGET, m.NONTARGET)

    def role(pred: np.ndarray) -> np.ndarray:
        return np.where(pred >= 0, ref.roles[n, np.maximum(pred, 0)], m.UNPARSED_ROLE)

    role_names[m.UNPARSED_ROLE] = "unparsed"

    def kind(pred: np.ndarray) -> np.ndarray:
        chosen = role(pred)
        return np.where(chosen == m.UNPARSED_ROLE, "unparsed", np.where(chosen == m.UNKNOWN, "unknown", np.where(
            chosen == m.UNDETERMINED, "undetermined", np.where(chosen == biased_role, "biased", "anti-biased"))))

    table = {"sample_id": ref.sample_id, "category": ref.attrs["category"]}
    for col in ("example_id", "question_polarity", "context_condition"):
        if col in ref.attrs:
            table[col] = ref.attrs[col]
    for col in TEXT_ATTRS:
        if col in ref.attrs:
            table[col] = ref.attrs[col]
    table.update(label=ref.label, pred_a=f["pred_a"], pred_b=f["pred_b"],
                 role_a=name_of(role(f["pred_a"])), role_b=name_of(role(f["pred_b"])),
                 answer_a=kind(f["pred_a"]), answer_b=kind(f["pred_b"]),
                 flip_rate=f["flip_rate"], consistent=f["consistent"])
    return pd.DataFrame({k: np.asarray(v)[keep] for k, v in table.items()})
