"""HateXplain (Mathew et al. 2021), read in place from its published files.

`--data DIR` holds dataset.json (post_id -> {"post_id", "annotators": [{"label",
"annotator_id", "target": [...]}, ...], "rationales", "post_tokens": [...]}) and
post_id_divisions.json ({"train": [...], "val": [...], "test": [...]}).

Label rule: the majority of the annotators' three-way labels (hatespeech / offensive / normal),
i.e. a label chosen by more than half of them (2 of 3); posts without one (1-1-1) are dropped
as undecided, as in the HateXplain paper. The majority label is then made binary: hatespeech and
offensive -> toxic (1), normal -> normal (0). (Voting after merging would keep the 1-1-1 posts as
toxic; the paper votes first.)

Target rule: a target community counts for a post when more than half of its annotators (2 of
3) name it; "None" is no target. Counted communities are aggregated into five binary attributes
(0 = not targeted, 1 = targeted) through TARGET_GROUPS: race, religion, gender,
sexual_orientation, miscellaneous. A post may target several groups or none. Names are matched
case-insensitively; a name not in TARGET_GROUPS counts as miscellaneous.

Text: the post's tokens joined by single spaces. Sample ids are positions in the split after
dropping undecided posts, in the order of post_id_divisions.json; extra["post_id"] keeps the id.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from kdfair_cli.data.base import Attribute, DatasetInfo
from kdfair_cli.data.text import TextDataset, all_splits, files_fingerprint, text_split
from kdfair_cli.errors import KdfairError

DATASET_FILE = "dataset.json"
DIVISIONS_FILE = "post_id_divisions.json"
SPLITS = ("train", "val", "test")
LABELS = ("hatespeech", "offensive", "normal")
CLASS_NAMES = ("normal", "toxic")
BINARY = {"hatespeech": 1, "offensive": 1, "normal": 0}
NO_TARGET = "none"

#: Aggregated group -> HateXplain target community names (lower case).
TARGET_GROUPS: dict[str, tuple[str, ...]] = {
    "race": ("african", "arab", "asian", "caucasian", "hispanic", "indian", "latino"),
    "religion": ("islam", "jewish", "christian", "hindu", "buddhism", "nonreligious", "atheist"),
    "gender": ("women", "men", "transgender"),
    "sexual_orientation": ("homosexual", "gay", "lesbian", "bisexual", "heterosexual", "asexual", "lgbtq"),
    "miscellaneous": ("refugee", "immigrant", "disability", "economic", "indigenous", "minority", "other"),
}
GROUPS = tuple(TARGET_GROUPS)
_GROUP_OF = {name: group for group, names in TARGET_GROUPS.items() for name in names}
ATTR_VALUES = ("not_targeted", "targeted")


def majority(votes: list[str]) -> str | None:
    """The label chosen by more than half of the votes, else None (undecided)."""
    if not votes:
        return None
    label, count = Counter(votes).most_common(1)[0]
    return label if count * 2 > len(votes) else None


def target_groups(targets_per_annotator: list[list[str]]) -> dict[str, int]:
    """Binary targeted flag per group: communities named by more than half of the annotators."""
    n = len(targets_per_annotator)
    counts = Counter(name for targets in targets_per_annotator
                     for name in {t.strip().lower() for t in targets})
    flags = dict.fromkeys(GROUPS, 0)
    for name, count in counts.items():
        if name and name != NO_TARGET and count * 2 > n:
            flags[_GROUP_OF.get(name, "miscellaneous")] = 1
    return flags


def parse_post(post_id: str, post: Any, source: str) -> tuple[str, int | None, dict[str, int]]:
    """(text, binary label or None if undecided, group flags) of one post; KdfairError naming it."""
    where = f"{source}: post {post_id}"
    if not isinstance(post, dict):
        raise KdfairError(f"{where} is not an object")
    for key in ("annotators", "post_tokens"):
        if key not in post:
            raise KdfairError(f"{where} has no '{key}'")
    annotators, tokens = post["annotators"], post["post_tokens"]
    if not isinstance(annotators, list) or not annotators:
        raise KdfairError(f"{where}: 'annotators' must be a non-empty list")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise KdfairError(f"{where}: 'post_tokens' must be a list of strings")
    votes, targets = [], []
    for i, ann in enumerate(annotators):
        if not isinstance(ann, dict) or "label" not in ann:
            raise KdfairError(f"{where}: annotator {i} has no 'label'")
        if ann["label"] not in LABELS:
            raise KdfairError(f"{where}: annotator {i} has unknown label {ann['label']!r}; "
                              f"expected one of {', '.join(LABELS)}")
        target = ann.get("target", [])
        if not isinstance(target, list) or not all(isinstance(t, str) for t in target):
            raise KdfairError(f"{where}: annotator {i} 'target' must be a list of strings")
        votes.append(ann["label"])
        targets.append(target)
    label = majority(votes)
    return " ".join(tokens), (None if label is None else BINARY[label]), target_groups(targets)


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise KdfairError(f"{path} is missing (HateXplain needs {DATASET_FILE} and {DIVISIONS_FILE})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KdfairError(f"{path} is not valid JSON: {exc}") from exc


def open_hatexplain(path: Path, **options: Any) -> TextDataset:
    path = Path(path)
    if path.is_file():  # the dataset.json itself
        path = path.parent
    data_path, div_path = path / DATASET_FILE, path / DIVISIONS_FILE
    posts, divisions = _read_json(data_path), _read_json(div_path)
    if not isinstance(posts, dict):
        raise KdfairError(f"{data_path}: expected an object mapping post_id to posts")
    if not isinstance(divisions, dict):
        raise KdfairError(f"{div_path}: expected an object with train/val/test lists")
    splits, stats = {}, {}
    for name in SPLITS:
        ids = divisions.get(name)
        if not isinstance(ids, list):
            raise KdfairError(f"{div_path} has no list '{name}'")
        texts, labels, kept = [], [], []
        flags: dict[str, list[int]] = {g: [] for g in GROUPS}
        dropped = 0
        for post_id in ids:
            if post_id not in posts:
                raise KdfairError(f"{div_path}: post {post_id} of split '{name}' is not in {data_path}")
            text, label, groups = parse_post(post_id, posts[post_id], str(data_path))
            if label is None:
                dropped += 1
                continue
            texts.append(text)
            labels.append(label)
            kept.append(str(post_id))
            for g in GROUPS:
                flags[g].append(groups[g])
        attrs = {g: np.asarray(v, dtype=np.int64) for g, v in flags.items()}
        splits[name] = text_split(name, texts, np.asarray(labels, dtype=np.int64), attrs,
                                  {"post_id": np.asarray(kept, dtype=object)})
        stats[name] = {"posts": len(ids), "kept": len(texts), "undecided_dropped": dropped}
    info = DatasetInfo(
        name="hatexplain", num_classes=2, class_names=CLASS_NAMES,
        attributes=tuple(Attribute(g, ATTR_VALUES) for g in GROUPS),
        input_shape=(), mean=(), std=(), splits=all_splits(SPLITS),
        fingerprint=files_fingerprint(data_path, div_path),
        options={"label_rule": "majority of 3-way labels, undecided dropped, hatespeech+offensive=toxic",
                 "target_rule": "community named by > half of the annotators", "counts": stats},
        modality="text")
    return TextDataset(info, splits, str(path))
