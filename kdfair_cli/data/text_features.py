"""A fixed, model-independent text representation for pair sets: TF-IDF (numpy/scipy, no torch).

Terms are lower-cased runs of letters and digits. The vocabulary and the IDF weights are fitted
once on the dataset's train split (the same for every split that is paired): terms that occur in
at least `min_df` training posts, the `max_features` most frequent by document frequency (ties
by term). Weights are sublinear term frequency (1 + log tf) times smoothed IDF
(log((1 + N) / (1 + df)) + 1), and every row is scaled to unit L2 norm, so Euclidean distance
ranks neighbours exactly as cosine similarity does (|a - b|^2 = 2 - 2 cos). A post with no
vocabulary term is the zero vector.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

_TERM = re.compile(r"[0-9a-z]+")


def terms(text: str) -> list[str]:
    return _TERM.findall(str(text).lower())


@dataclass(frozen=True)
class Tfidf:
    vocabulary: tuple[str, ...]
    idf: np.ndarray  # float32 [V]

    def transform(self, texts) -> np.ndarray:
        """Dense float32 [N, V], rows of unit L2 norm (or zero)."""
        index = {t: i for i, t in enumerate(self.vocabulary)}
        x = np.zeros((len(texts), len(self.vocabulary)), dtype=np.float32)
        for row, text in enumerate(texts):
            counts = Counter(index[t] for t in terms(text) if t in index)
            if counts:
                cols = np.fromiter(counts.keys(), dtype=np.int64)
                tf = np.fromiter(counts.values(), dtype=np.float32)
                x[row, cols] = (1.0 + np.log(tf)) * self.idf[cols]
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        np.divide(x, norms, out=x, where=norms > 0)
        return x


def fit_tfidf(texts, max_features: int = 5000, min_df: int = 2) -> Tfidf:
    """Vocabulary and IDF from `texts` (the training split)."""
    df = Counter(t for text in texts for t in set(terms(text)))
    kept = sorted((t for t, c in df.items() if c >= min_df), key=lambda t: (-df[t], t))[:max_features]
    vocab = tuple(sorted(kept))
    n = len(texts)
    idf = np.array([np.log((1.0 + n) / (1.0 + df[t])) + 1.0 for t in vocab], dtype=np.float32)
    return Tfidf(vocab, idf)
