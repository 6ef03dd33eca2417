"""What text datasets share: in-memory splits of raw text, and counterfactual identity swaps.

A text split is a `Split` with images=None and the raw text in extra["text"] (an object array of
str). Tokenisation belongs to the model (its tokenizer lives in the model directory), so the
dataset holds text only; kdfair_cli.models.text turns a split into token ids once per run.

Derived splits `<split>+swap` (for individual fairness, `kdfair pairs --source identity-swap`):
the posts of <split> with their own sample ids 0..N-1, followed by one counterfactual copy of
every post that contains an identity term of IDENTITY_SWAPS, with every such term replaced by
its counterpart (women <-> men, black <-> white, muslim <-> christian, gay <-> straight, ...).
A copy gets sample id N + j, the label and attributes of its original, and
extra["swap_of"] = the original's sample id (-1 for originals). `kdfair predict --split
test+swap` scores originals and copies in one predictions file, so pairs join within it.
This module imports no torch.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from kdfair_cli.data.base import DatasetInfo, Split
from kdfair_cli.errors import KdfairError

SWAP_SUFFIX = "+swap"

#: Identity-term pairs swapped in both directions (lower case; matched as whole words,
#: case-insensitively; a capitalised word stays capitalised). One term has one counterpart.
IDENTITY_SWAPS: dict[str, tuple[tuple[str, str], ...]] = {
    "gender": (("woman", "man"), ("women", "men"), ("girl", "boy"), ("girls", "boys"),
               ("female", "male"), ("females", "males"), ("she", "he"), ("her", "his"),
               ("mother", "father"), ("sister", "brother"), ("wife", "husband"),
               ("daughter", "son"), ("ladies", "gentlemen"), ("feminist", "masculinist")),
    "race": (("black", "white"), ("blacks", "whites"), ("african", "european"),
             ("africans", "europeans"), ("mexican", "canadian"), ("mexicans", "canadians"),
             ("hispanic", "caucasian"), ("asian", "american"), ("asians", "americans")),
    "religion": (("muslim", "christian"), ("muslims", "christians"), ("islam", "christianity"),
                 ("islamic", "catholic"), ("jew", "hindu"), ("jews", "hindus"),
                 ("jewish", "buddhist")),
    "sexual_orientation": (("gay", "straight"), ("gays", "straights"),
                           ("homosexual", "heterosexual"), ("homosexuals", "heterosexuals"),
                           ("lesbian", "hetero"), ("lesbians", "heteros")),
}


def _swap_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for pairs in IDENTITY_SWAPS.values():
        for a, b in pairs:
            assert a not in table and b not in table, (a, b)
            table[a], table[b] = b, a
    return table


SWAP_TABLE = _swap_table()
_WORD = re.compile(r"[A-Za-z]+")


def swap_identity(text: str) -> str | None:
    """The text with every identity term swapped for its counterpart; None if it has none."""
    hit = False

    def repl(m: re.Match) -> str:
        nonlocal hit
        word = m.group(0)
        other = SWAP_TABLE.get(word.lower())
        if other is None:
            return word
        hit = True
        if word.isupper() and len(word) > 1:
            return other.upper()
        return other.capitalize() if word[0].isupper() else other

    out = _WORD.sub(repl, text)
    return out if hit else None


def swap_split(base: Split) -> Split:
    """The derived split `<base>+swap` (see the module docstring)."""
    texts = base.extra["text"]
    n = len(base)
    copies, sources = [], []
    for i, t in enumerate(texts):
        swapped = swap_identity(str(t))
        if swapped is not None:
            copies.append(swapped)
            sources.append(i)
    src = np.asarray(sources, dtype=np.int64)
    all_idx = np.concatenate([np.arange(n, dtype=np.int64), src])
    extra = {k: v[all_idx] for k, v in base.extra.items()}
    extra["text"] = np.concatenate([np.asarray(texts, dtype=object), np.asarray(copies, dtype=object)])
    extra["swap_of"] = np.concatenate([np.full(n, -1, dtype=np.int64), base.sample_id[src]])
    return Split(base.name + SWAP_SUFFIX, None, base.labels[all_idx],
                 np.arange(n + src.size, dtype=np.int64), {k: v[all_idx] for k, v in base.attrs.items()}, extra)


class TextDataset:
    """A text dataset held in memory: info plus base splits; derived `+swap` splits on demand."""

    def __init__(self, info: DatasetInfo, splits: dict[str, Split], source: str) -> None:
        self.info = info
        self._splits = splits
        self._source = source

    def split(self, name: str) -> Split:
        if name.endswith(SWAP_SUFFIX) and name[:-len(SWAP_SUFFIX)] in self._splits:
            return swap_split(self._splits[name[:-len(SWAP_SUFFIX)]])
        if name not in self._splits:
            raise KdfairError(f"{self._source} has no split '{name}'; it has: {', '.join(self.info.splits)}")
        return self._splits[name]


def text_split(name: str, texts: list[str], labels: np.ndarray, attrs: dict[str, np.ndarray],
               extra: dict[str, np.ndarray] | None = None) -> Split:
    extra = dict(extra or {})
    extra["text"] = np.asarray(texts, dtype=object)
    return Split(name, None, np.asarray(labels, dtype=np.int64), np.arange(len(texts), dtype=np.int64),
                 attrs, extra)


def all_splits(base: tuple[str, ...]) -> tuple[str, ...]:
    """Base splits followed by their derived `+swap` splits."""
    return tuple(base) + tuple(s + SWAP_SUFFIX for s in base)


def files_fingerprint(*paths: Path) -> str:
    """sha256 over the bytes of the files (and their names), identifying the data on disk."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()
