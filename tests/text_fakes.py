"""Tiny HateXplain-shaped and CSV text data for fast tests (a few dozen posts, ~200 words)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TOXIC = [f"tox{i}" for i in range(30)]
NORMAL = [f"calm{i}" for i in range(30)]
FILLER = [f"w{i}" for i in range(120)] + ["women", "men", "black", "white", "muslims", "people"]
TARGETS = ["Women", "African", "Islam", "Homosexual", "Refugee", "None"]


def make_post(rng: np.random.Generator, post_id: str, label: str, targets: list[list[str]] | None = None,
              labels: list[str] | None = None) -> dict:
    toxic = label != "normal"
    words = list(rng.choice(TOXIC if toxic else NORMAL, 3)) + list(rng.choice(FILLER, int(rng.integers(3, 8))))
    rng.shuffle(words)
    labels = labels or [label, label, "normal" if toxic else "offensive"]
    targets = targets or [[TARGETS[int(rng.integers(len(TARGETS)))]]] * 3
    return {"post_id": post_id,
            "annotators": [{"label": lab, "annotator_id": 100 + i, "target": list(t)}
                           for i, (lab, t) in enumerate(zip(labels, targets))],
            "rationales": [],
            "post_tokens": [str(w) for w in words]}


def write_hatexplain(folder: Path, n_train: int = 48, n_val: int = 12, n_test: int = 16, seed: int = 0) -> Path:
    """dataset.json + post_id_divisions.json in the published structure; 2 undecided posts."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    posts, divisions = {}, {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        ids = []
        for i in range(n):
            pid = f"{split}_{i}_gab"
            label = ["hatespeech", "offensive", "normal", "normal"][i % 4]
            posts[pid] = make_post(rng, pid, label)
            ids.append(pid)
        divisions[split] = ids
    for split in ("train", "test"):  # undecided: one vote each
        pid = f"{split}_undecided_twitter"
        posts[pid] = make_post(rng, pid, "normal", labels=["hatespeech", "offensive", "normal"])
        divisions[split].insert(1, pid)
    (folder / "dataset.json").write_text(json.dumps(posts, indent=1))
    (folder / "post_id_divisions.json").write_text(json.dumps(divisions))
    return folder
