"""`corpus`: a local text corpus for training causal language models (next-token prediction).

`--data` is a JSONL file, or a folder holding train.jsonl and optionally val.jsonl. Each line
is a JSON object with either
- `text`: every token of it (and the EOS after it) is learned, or
- `prompt` and `response`: the prompt is context only; the response tokens and the EOS after
  them are learned (supervised fine-tuning style),
and optionally `id` (a non-negative integer, unique in the file; default: the line's position).
A file mixes the two kinds freely. Empty lines are skipped; anything else that is not such an
object is refused, naming file and line (PATH:LINE). Without val.jsonl, training holds out `val_fraction`
of train (seeded), as for every other dataset.

Tokenisation belongs to the model (kdfair_cli.llm.trainee); this module holds text only
and imports no torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdfair_cli.data.base import DatasetInfo, Split
from kdfair_cli.data.text import files_fingerprint
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.jsonl import json_lines

SPLIT_FILES = {"train": "train.jsonl", "val": "val.jsonl"}


def _read_jsonl(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(prompts, responses, ids) of a JSONL file; a `text` line has prompt ''."""
    prompts, responses, ids = [], [], []
    for where, row in json_lines(path):
        if not isinstance(row, dict):
            raise KdfairError(f"{where}: expected a JSON object with 'text' or 'prompt' and 'response'")
        if "text" in row:
            if "prompt" in row or "response" in row:
                raise KdfairError(f"{where}: give either 'text' or 'prompt' and 'response', not both")
            prompt, response = "", row["text"]
        elif "prompt" in row and "response" in row:
            prompt, response = row["prompt"], row["response"]
        else:
            raise KdfairError(f"{where}: no 'text' field (or 'prompt' and 'response'); "
                              f"it has: {', '.join(sorted(row)) or 'nothing'}")
        if not isinstance(prompt, str) or not isinstance(response, str):
            raise KdfairError(f"{where}: 'text', 'prompt' and 'response' must be strings")
        if not response:
            raise KdfairError(f"{where}: empty {'text' if not prompt else 'response'}: nothing to learn")
        ident = row.get("id", len(ids))
        if not isinstance(ident, int) or isinstance(ident, bool) or ident < 0:
            raise KdfairError(f"{where}: 'id' must be a non-negative integer, found {ident!r}")
        prompts.append(prompt)
        responses.append(response)
        ids.append(ident)
    if not ids:
        raise KdfairError(f"{path} holds no lines")
    id_arr = np.asarray(ids, dtype=np.int64)
    uniq, counts = np.unique(id_arr, return_counts=True)
    if (counts > 1).any():
        raise KdfairError(f"{path}: id {int(uniq[counts > 1][0])} appears {int(counts.max())} times")
    return prompts, responses, id_arr


def corpus_split(name: str, prompts: list[str], responses: list[str], ids: np.ndarray) -> Split:
    """A corpus split: extra["prompt"] and extra["response"] (object arrays), labels all 0."""
    n = len(ids)
    extra = {"prompt": np.asarray(prompts, dtype=object), "response": np.asarray(responses, dtype=object)}
    return Split(name, None, np.zeros(n, dtype=np.int64), ids, {}, extra)


class CorpusDataset:
    def __init__(self, info: DatasetInfo, splits: dict[str, Split], source: str) -> None:
        self.info = info
        self._splits = splits
        self._source = source

    def split(self, name: str) -> Split:
        if name not in self._splits:
            raise KdfairError(f"{self._source} has no split '{name}'; it has: {', '.join(self.info.splits)}")
        return self._splits[name]


def open_corpus(path: Path) -> CorpusDataset:
    path = Path(path)
    if path.is_file():
        if path.suffix != ".jsonl":
            raise KdfairError(f"{path}: expected a .jsonl file (or a folder with train.jsonl)")
        files = {"train": path}
    else:
        files = {s: path / f for s, f in SPLIT_FILES.items() if (path / f).is_file()}
        if "train" not in files:
            raise KdfairError(f"{path} has no train.jsonl")
    splits = {s: corpus_split(s, *_read_jsonl(f)) for s, f in files.items()}
    info = DatasetInfo(name="corpus", num_classes=1, class_names=("next-token",), attributes=(),
                       input_shape=(), mean=(), std=(), splits=tuple(splits),
                       fingerprint=files_fingerprint(*files.values()), modality="corpus")
    return CorpusDataset(info, splits, str(path))
