"""Individual fairness I(f) of one or several prediction sets over one fixed pair set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdfair_cli.api._compare import PAIRED, SideComparison, compare, pairing
from kdfair_cli.api._stats import mean_std
from kdfair_cli.api.predictions import PredictionsLike, as_sources, read_pair_set, read_predictions
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.align import check_same_source, rows_for_ids, source_of
from kdfair_cli.io.pairs_file import PairSet
from kdfair_cli.io.predictions import Predictions
from kdfair_cli.jsonable import jsonable
from kdfair_cli.metrics.group import percentile_ci
from kdfair_cli.metrics.individual import (IndividualFairness, onehot, output_distance, pair_ratios,
                                           softmax, summarise_ratios)
from kdfair_cli.metrics.paired import Interval, mean_interval, paired_individual

#: The per-file values, in the order of the JSON `files` rows and the `-o` table.
FIELDS = ("score", "median", "p95", "max", "n_pairs", "n_zero_distance", "mean_output_distance")


def pair_rows(p: Predictions, pairs: PairSet) -> tuple[np.ndarray, np.ndarray]:
    """Row indices in p of both sides of every pair; pairs from another split are refused."""
    ref = {**source_of(pairs.meta), "dataset": None}
    check_same_source(f"pair file {pairs.path}", ref, p.path, {**source_of(p.meta), "dataset": None})
    return tuple(rows_for_ids(p.sample_id, sid, have=p.path, want=f"{pairs.path} column '{col}'")
                 for col, sid in (("sample_id_a", pairs.sample_id_a),
                                  ("sample_id_b", pairs.sample_id_b)))  # type: ignore[return-value]


@dataclass
class IndividualFairnessResult:
    """I(f) per predictions set and their mean; `to_dict()` is `individual-fairness --json`."""

    paths: list[str]
    results: list[IndividualFairness]
    pairs: PairSet
    temperature: float
    output_distance: str
    model_output: str
    intervals: list[Interval] | None = None  # per file, bootstrap over pairs (file i: seed + i)
    n_boot: int = 0
    seed: int = 0
    versus_paths: list[str] | None = None
    versus: SideComparison | None = None  # I(A) minus I(B) on the same pair set

    def rows(self) -> list[dict[str, Any]]:
        """One row per predictions set (what `-o` writes, and the JSON `files`)."""
        rows = [{"file": p, **{k: getattr(r, k) for k in FIELDS}} for p, r in zip(self.paths, self.results)]
        for row, iv in zip(rows, self.intervals or []):
            row["ci_low"], row["ci_high"] = iv.ci
        return rows

    def score_ci(self) -> tuple[float, float] | None:
        """Percentile interval of the mean score over files (per-file replicates averaged)."""
        if self.intervals is None:
            return None
        return percentile_ci(np.mean(np.stack([iv.boot for iv in self.intervals]), axis=0),
                             self.intervals[0].confidence)

    @property
    def score(self) -> float:
        return mean_std([r.score for r in self.results])[0]

    def meta(self) -> dict[str, Any]:
        """The settings and the pair set's provenance (the `-o` table's metadata)."""
        return {"pairs": self.pairs.path, "pairs_meta": self.pairs.meta, "temperature": self.temperature,
                "output_distance": self.output_distance, "model_output": self.model_output}

    def to_dict(self) -> dict[str, Any]:
        score, score_std = mean_std([r.score for r in self.results])
        first = self.results[0]
        return jsonable({"score": score, "score_std": score_std, "n_pairs": first.n_pairs,
                         "n_zero_distance": first.n_zero_distance, "temperature": self.temperature,
                         "output_distance": self.output_distance, "model_output": self.model_output,
                         "pairs": self.pairs.path, "pair_source": self.pairs.meta.get("source"),
                         "distance": self.pairs.meta.get("distance"), "files": self.rows(),
                         **self._test_keys()})

    def _test_keys(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.intervals is not None:
            out.update({"score_ci": list(self.score_ci()), "confidence": self.intervals[0].confidence,
                        "n_boot": self.n_boot, "seed": self.seed})
        if self.versus is not None:
            out.update({"versus": self.versus_paths, "delta_test": self.versus.test,
                        **self.versus.keys("score")})
        return out


@dataclass
class _Outputs:
    """f of one predictions set on the samples of the pair set, and where each used pair's ends
    are among them: what a per-sample swap of two models' outputs needs."""

    f: np.ndarray  # [S, K] one row per sample in some pair
    ids: np.ndarray  # [S] their sample ids
    a: np.ndarray  # [P] row of f of each used pair's first end
    b: np.ndarray  # [P]
    distance: np.ndarray  # [P] input distance of each used pair (> 0)


def _mixed(x: _Outputs, y: _Outputs, metric: str) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Per used pair, the ratio with end a's output from y and b's from x minus the ratio with
    a's from x and b's from y; and the pairs' ends as rows of x (paired_individual's inputs)."""
    rows = rows_for_ids(y.ids, x.ids, have="the --versus pair rows", want="the pair rows")
    fy = y.f[rows]  # y's outputs in x's sample order
    step = max(1, (1 << 24) // max(x.f.shape[1], 1))  # rows per block, as pair_ratios
    mixed = np.concatenate([
        output_distance(fy[x.a[s:s + step]], x.f[x.b[s:s + step]], metric)
        - output_distance(x.f[x.a[s:s + step]], fy[x.b[s:s + step]], metric)
        for s in range(0, x.a.size, step)] or [np.empty(0)])
    return mixed / x.distance, (x.a, x.b)


def _ratios(source: Any, i: int, what: str, pair_set: PairSet, temperature: float, output_distance: str,
            model_output: str, cols: dict[str, str]) -> tuple[str, IndividualFairness, np.ndarray, _Outputs]:
    """One predictions set's per-pair ratios (pairs at distance > 0, in pair order), summary and
    outputs."""
    p = read_predictions(source, name=f"{what}[{i}]", **cols, with_logits=model_output == "probs")
    if model_output == "probs" and p.logits is None:
        raise KdfairError(f"{p.path}: no '{cols['logits_col']}' or logit_<k> columns, so no "
                          "probabilities; use --model-output onehot to score hard predictions")
    a, b = pair_rows(p, pair_set)
    used = np.union1d(a, b)  # f only for the rows in some pair
    f = (softmax(p.logits[used], temperature) if model_output == "probs"
         else onehot(p.pred[used], p.num_classes))
    ia, ib = np.searchsorted(used, a), np.searchsorted(used, b)
    ratio, dout, kept = pair_ratios(f, ia, ib, pair_set.distance, output_distance)
    outputs = _Outputs(f, p.sample_id[used], ia[kept], ib[kept],
                       np.asarray(pair_set.distance, dtype=np.float64)[kept])
    return p.path, summarise_ratios(ratio, dout, kept), ratio, outputs


def individual_fairness(preds: PredictionsLike | Sequence[PredictionsLike], pairs: Any, *,
                        temperature: float = 1.0, output_distance: str = "tv",
                        model_output: str = "probs", n_boot: int = 1000, confidence: float = 0.95,
                        seed: int = 0, versus: PredictionsLike | Sequence[PredictionsLike] | None = None,
                        n_perm: int = 1000, label_col: str = "label", pred_col: str = "pred",
                        logits_col: str = "logits", id_col: str = "sample_id") -> IndividualFairnessResult:
    """I(f) = mean over pairs of |f(x) - f(x')| / d(x, x') for each predictions set (lower is fairer).

    `pairs` is a pair file, a PairSet, or a DataFrame with sample_id_a, sample_id_b, distance.
    f is softmax(logits / temperature) (model_output="probs") or the one-hot prediction.
    n_boot > 0: a bootstrap-over-pairs interval per file (file i: seed + i) and of the mean.
    `versus` (model B) adds I(A) - I(B) on the same pairs: a permutation test that swaps the two
    models' outputs per sample, in every pair the sample is in (n_perm draws), and a bootstrap
    clustered by sample (n_boot, or 1000, replicates), both valid when pairs share samples;
    several files a side are combined as in group_fairness (docs/metrics.md).
    """
    if temperature <= 0:
        raise KdfairError(f"--temperature must be > 0, got {temperature}")
    if n_boot < 0:
        raise KdfairError(f"--bootstrap must be >= 0 (0 = no interval), got {n_boot}")
    if n_perm < 1:
        raise KdfairError(f"--permutations must be >= 1, got {n_perm}")
    if not 0 < confidence < 1:
        raise KdfairError(f"--confidence must be in (0, 1), got {confidence}")
    pair_set = read_pair_set(pairs)
    if len(pair_set) == 0:
        raise KdfairError(f"{pair_set.path}: the pair file holds no pairs")
    cols = dict(label_col=label_col, pred_col=pred_col, id_col=id_col, logits_col=logits_col)
    side = [_ratios(s, i, "predictions", pair_set, temperature, output_distance, model_output, cols)
            for i, s in enumerate(as_sources(preds))]
    if not side:
        raise KdfairError("predictions: no predictions given")
    intervals = None
    if n_boot:
        intervals = [mean_interval(r, n_boot=n_boot, seed=seed + i, confidence=confidence)
                     for i, (_, _, r, _) in enumerate(side)]
    cmp, other_paths = None, None
    if versus is not None:
        other = [_ratios(s, i, "versus", pair_set, temperature, output_distance, model_output, cols)
                 for i, s in enumerate(as_sources(versus))]
        per_seed = None
        if pairing(len(side), len(other)) == PAIRED:
            per_seed = []
            for i, ((pa, _, ra, fa), (pb, _, rb, fb)) in enumerate(zip(side, other)):
                if fa.f.shape[1] != fb.f.shape[1]:
                    raise KdfairError(f"{pb}: {fb.f.shape[1]} classes, {pa} has {fa.f.shape[1]}; "
                                      "--versus compares outputs over the same classes")
                mixed, ends = _mixed(fa, fb, output_distance)
                per_seed.append(paired_individual(ra, rb, mixed=mixed, pair_samples=ends, n_perm=n_perm,
                                                  n_boot=n_boot or 1000, seed=seed + i,
                                                  confidence=confidence))
        cmp = compare([r.score for _, r, _, _ in side], [r.score for _, r, _, _ in other], per_seed)
        other_paths = [path for path, _, _, _ in other]
    return IndividualFairnessResult([path for path, _, _, _ in side], [r for _, r, _, _ in side], pair_set,
                                    temperature, output_distance, model_output, intervals, n_boot,
                                    seed, other_paths, cmp)
