"""Which classes' accuracy differs between two models (seeds a side: Welch; one a side: McNemar)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdfair_cli.api.predictions import PredictionsLike, as_sources, read_many, source_names
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.align import check_same_source, source_of
from kdfair_cli.io.atomic import atomic_path
from kdfair_cli.io.predictions import Predictions
from kdfair_cli.jsonable import jsonable
from kdfair_cli.metrics.class_bias import ClassComparison
from kdfair_cli.metrics.class_bias import compare_classes as _compare_classes


_SAME_SPLIT = "; compare predictions of the same split"
_HINTS = {"num_classes": "; compare models of the same task", "dataset": _SAME_SPLIT,
          "split": _SAME_SPLIT, "fingerprint": _SAME_SPLIT}


def _mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean and sample std over runs (rows); std NaN for one run."""
    return x.mean(axis=0), (x.std(axis=0, ddof=1) if x.shape[0] > 1 else np.full(x.shape[1], np.nan))


def _align(files: list[Predictions]) -> None:
    """Refuse files that are not predictions on the same samples of the same split."""
    ref = files[0]
    for p in files[1:]:
        check_same_source(ref.path, source_of(ref.meta, ref.num_classes), p.path,
                          source_of(p.meta, p.num_classes), _HINTS)
        if len(p) != len(ref) or not np.array_equal(p.sample_id, ref.sample_id):
            raise KdfairError(f"{p.path} and {ref.path} hold different sample sets "
                              f"({len(p)} vs {len(ref)} rows); compare predictions of the same "
                              "split")
        if not np.array_equal(p.label, ref.label):
            n_bad = int((p.label != ref.label).sum())
            raise KdfairError(f"{p.path} and {ref.path} disagree on the true label of {n_bad} "
                              "samples; they are not predictions of the same split")


@dataclass
class ClassComparisonResult:
    """Per-class test of A vs B; `to_dict()` is exactly what `compare-classes --json` prints."""

    comparison: ClassComparison
    class_names: list[str]
    files_a: list[str]
    files_b: list[str]
    normalize: str
    alpha: float
    correction: str

    @property
    def num_classes(self) -> int:
        return int(self.comparison.n.size)

    @property
    def n_significant(self) -> int:
        return int(self.comparison.n_significant)

    def meta(self) -> dict[str, Any]:
        return {"test": self.comparison.test, "normalize": self.normalize, "alpha": self.alpha,
                "correction": self.correction, "files_a": self.files_a, "files_b": self.files_b}

    def records(self) -> dict[str, np.ndarray | list]:
        """One row per class (what `-o` writes): accuracies, the test, disagreement, notes."""
        res = self.comparison
        (acc_a, acc_a_sd), (acc_b, acc_b_sd) = _mean_std(res.acc_a), _mean_std(res.acc_b)
        (nrm_a, nrm_a_sd), (nrm_b, nrm_b_sd) = _mean_std(res.norm_a), _mean_std(res.norm_b)
        rec: dict[str, np.ndarray | list] = {
            "class": np.arange(res.n.size), "class_name": self.class_names, "n": res.n,
            "acc_a_mean": acc_a, "acc_a_std": acc_a_sd, "acc_b_mean": acc_b, "acc_b_std": acc_b_sd,
            "norm_a_mean": nrm_a, "norm_a_std": nrm_a_sd, "norm_b_mean": nrm_b, "norm_b_std": nrm_b_sd,
            "statistic": res.statistic, "p_value": res.p_value, "p_adjusted": res.p_adjusted,
            "significant": res.significant, "disagreement": res.disagreement,
            "note": [str(x) for x in res.note],
        }
        if res.a_only is not None:
            rec["a_only"], rec["b_only"] = res.a_only, res.b_only
        return rec

    def disagreement_records(self) -> dict[str, np.ndarray]:
        """The off-diagonal (pred A, pred B) counts, long format (what `--disagreement` writes)."""
        pa_, pb_ = np.nonzero(self.comparison.matrix)
        return {"pred_a": pa_, "pred_b": pb_, "count": self.comparison.matrix[pa_, pb_]}

    def disagreement_meta(self) -> dict[str, Any]:
        return {**self.meta(), "num_classes": self.num_classes,
                "paired_runs": self.comparison.n_disagreement_pairs,
                "count_is": "mean over paired runs (seed i of A with seed i of B)"}

    def to_dict(self) -> dict[str, Any]:
        rec, res = self.records(), self.comparison
        return jsonable({**self.meta(), "n_classes": self.num_classes, "n_tested": res.n_tested,
                         "n_significant": res.n_significant,
                         "overall_acc_a": res.overall_a, "overall_acc_b": res.overall_b,
                         "disagreement_pairs": res.n_disagreement_pairs,
                         "classes": [{k: rec[k][i] for k in rec} for i in range(self.num_classes)]})

    def plot_disagreement(self, path: str | Path, labels: tuple[str, str] = ("A", "B")) -> None:
        """Heat map PNG of the off-diagonal disagreement matrix (matplotlib, imported only here)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        matrix, names = self.comparison.matrix, self.class_names
        c = matrix.shape[0]
        fig, ax = plt.subplots(figsize=(min(12, 3 + 0.4 * c), min(10, 2.5 + 0.35 * c)) if c <= 25
                               else (9, 8))
        image = ax.imshow(np.log1p(matrix), cmap="viridis", interpolation="nearest")
        fig.colorbar(image, ax=ax, label="log(1 + count)")
        if c <= 25:
            ax.set_xticks(range(c), names, rotation=90)
            ax.set_yticks(range(c), names)
        ax.set_xlabel(f"prediction of B ({labels[1]})")
        ax.set_ylabel(f"prediction of A ({labels[0]})")
        ax.set_title("samples where A and B disagree (diagonal = agreement, left out)")
        fig.tight_layout()
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)


def compare_classes(a: PredictionsLike | Sequence[PredictionsLike],
                    b: PredictionsLike | Sequence[PredictionsLike], *, normalize: str = "ratio",
                    alpha: float = 0.05, correction: str = "none", label_col: str = "label",
                    pred_col: str = "pred", id_col: str = "sample_id") -> ClassComparisonResult:
    """Test which classes' accuracy differs between model A and model B.

    One predictions set a side: an exact McNemar test per class, paired on sample_id. Two or more
    a side (seeds): Welch's t-test of each class's normalised accuracy over seeds.
    """
    if not 0 < alpha < 1:
        raise KdfairError(f"--alpha must be in (0, 1), got {alpha}")
    kw: dict[str, Any] = dict(label_col=label_col, pred_col=pred_col, id_col=id_col,
                              with_logits=False, need_label=True)
    a, b = as_sources(a), as_sources(b)
    if not ((len(a) >= 2 and len(b) >= 2) or (len(a) == 1 and len(b) == 1)):
        raise KdfairError(f"got {len(a)} file(s) for A and {len(b)} for B: give one file a side "
                          "(McNemar test) or at least two a side (Welch's t-test over seeds)")
    runs_a = [p.sorted_by_id() for p in read_many(a, "a", **kw)]
    runs_b = [p.sorted_by_id() for p in read_many(b, "b", **kw)]
    _align(runs_a + runs_b)
    ref = runs_a[0]
    if normalize == "ratio":
        for p in runs_a + runs_b:
            if not np.any(p.pred == p.label):
                raise KdfairError(f"{p.path}: overall accuracy is 0, so --normalize ratio is "
                                  "undefined; use --normalize difference or none")
    res = _compare_classes(ref.label, [p.pred for p in runs_a], [p.pred for p in runs_b],
                           ref.num_classes, normalize=normalize, alpha=alpha, correction=correction)
    return ClassComparisonResult(res, ref.class_names, source_names(a, runs_a),
                                 source_names(b, runs_b), normalize, alpha, correction)
