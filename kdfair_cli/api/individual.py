"""Individual fairness I(f) of one or several prediction sets over one fixed pair set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdfair_cli.api._stats import mean_std
from kdfair_cli.api.predictions import PredictionsLike, as_sources, read_pair_set, read_predictions
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.align import check_same_source, rows_for_ids, source_of
from kdfair_cli.io.pairs_file import PairSet
from kdfair_cli.io.predictions import Predictions
from kdfair_cli.jsonable import jsonable
from kdfair_cli.metrics.individual import IndividualFairness, onehot, softmax
from kdfair_cli.metrics.individual import individual_fairness as _individual_fairness

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

    def rows(self) -> list[dict[str, Any]]:
        """One row per predictions set (what `-o` writes, and the JSON `files`)."""
        return [{"file": p, **{k: getattr(r, k) for k in FIELDS}} for p, r in zip(self.paths, self.results)]

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
                         "distance": self.pairs.meta.get("distance"), "files": self.rows()})


def individual_fairness(preds: PredictionsLike | Sequence[PredictionsLike], pairs: Any, *,
                        temperature: float = 1.0, output_distance: str = "tv",
                        model_output: str = "probs", label_col: str = "label", pred_col: str = "pred",
                        logits_col: str = "logits", id_col: str = "sample_id") -> IndividualFairnessResult:
    """I(f) = mean over pairs of |f(x) - f(x')| / d(x, x') for each predictions set (lower is fairer).

    `pairs` is a pair file, a PairSet, or a DataFrame with sample_id_a, sample_id_b, distance.
    f is softmax(logits / temperature) (model_output="probs") or the one-hot prediction.
    """
    if temperature <= 0:
        raise KdfairError(f"--temperature must be > 0, got {temperature}")
    pair_set = read_pair_set(pairs)
    if len(pair_set) == 0:
        raise KdfairError(f"{pair_set.path}: the pair file holds no pairs")
    sources = as_sources(preds)
    paths, results = [], []
    for i, source in enumerate(sources):
        p = read_predictions(source, name=f"predictions[{i}]", label_col=label_col, pred_col=pred_col,
                             id_col=id_col, logits_col=logits_col, with_logits=model_output == "probs")
        if model_output == "probs" and p.logits is None:
            raise KdfairError(f"{p.path}: no '{logits_col}' or logit_<k> columns, so no "
                              "probabilities; use --model-output onehot to score hard predictions")
        a, b = pair_rows(p, pair_set)
        used = np.union1d(a, b)  # f only for the rows in some pair
        f = (softmax(p.logits[used], temperature) if model_output == "probs"
             else onehot(p.pred[used], p.num_classes))
        results.append(_individual_fairness(f, np.searchsorted(used, a), np.searchsorted(used, b),
                                            pair_set.distance, output_distance))
        paths.append(p.path)
    return IndividualFairnessResult(paths, results, pair_set, temperature, output_distance, model_output)
