"""BBQ (Parrish et al. 2022, Bias Benchmark for QA), read in place from its published layout.

`--data DIR` holds `data/<Category>.jsonl` (or the .jsonl files directly), one item per line
with example_id, question_index, question_polarity (neg/nonneg), context_condition
(ambig/disambig), category, answer_info ({"ansK": [text, group]}), additional_metadata
(subcategory, stereotyped_groups, version, source), context, question, ans0..ans2, label.

Each option has a role: `target` (the answer naming the stereotyped group), `nontarget` (the
other person), `unknown` (the "can't be determined" answer) or `undetermined`. When
DIR/supplemental/additional_metadata.csv is present its `target_loc` (and `label_type`) is
used; otherwise, and for items it lacks or leaves empty, the role is derived from answer_info
and stereotyped_groups by `derive_roles` (rules in docs/llm.md). An item whose roles cannot
be derived keeps role `undetermined` for its two people and is counted, never guessed.

The dataset has one split, `test` (BBQ has no training data). Sample ids do not depend on
the folder: `bbq_sample_id` = CATEGORY_INDEX * 1_000_000 + example_id, so predictions made
by kdfair and those imported from lm-evaluation-harness pair item by item.
This module imports no torch.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdfair_cli.data.base import Attribute, DatasetInfo, Split
from kdfair_cli.data.options import check_options
from kdfair_cli.data.text import files_fingerprint
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import register_input
from kdfair_cli.io.jsonl import json_lines

SPLIT = "test"
CLASS_NAMES = ("ans0", "ans1", "ans2")
#: The eleven published categories, in file-name order; their position gives the id block.
CATEGORIES = ("Age", "Disability_status", "Gender_identity", "Nationality", "Physical_appearance",
              "Race_ethnicity", "Race_x_SES", "Race_x_gender", "Religion", "SES",
              "Sexual_orientation")
ID_BLOCK = 1_000_000
POLARITIES = ("neg", "nonneg")
CONDITIONS = ("ambig", "disambig")
TARGET, NONTARGET, UNKNOWN, UNDETERMINED = "target", "nontarget", "unknown", "undetermined"
ROLES = (TARGET, NONTARGET, UNKNOWN, UNDETERMINED)
REQUIRED = ("example_id", "question_index", "question_polarity", "context_condition", "category",
            "answer_info", "additional_metadata", "context", "question", "ans0", "ans1", "ans2",
            "label")
METADATA_CSV = Path("supplemental") / "additional_metadata.csv"
#: Text columns carried into predictions (for per-item flips), besides the attributes.
TEXT_FIELDS = ("context", "question", "ans0", "ans1", "ans2")

_MALE = {"m", "man", "men", "boy", "boys", "male"}
_FEMALE = {"f", "woman", "women", "girl", "girls", "female"}
_PREFIXED = re.compile(r"^(m|f|lowses|highses)-(.+)$")


def bbq_sample_id(category: str, example_id: int, extra: Sequence[str] = ()) -> int:
    """CATEGORY_INDEX * 1e6 + example_id; categories outside CATEGORIES follow in `extra` order."""
    order = list(CATEGORIES) + [c for c in extra if c not in CATEGORIES]
    if category not in order:
        raise KdfairError(f"BBQ category {category!r} is not known")
    if not 0 <= int(example_id) < ID_BLOCK:
        raise KdfairError(f"BBQ example_id {example_id} of {category} is outside [0, {ID_BLOCK})")
    return order.index(category) * ID_BLOCK + int(example_id)


def norm_group(text: str) -> str:
    """Lower case, no spaces; gender words -> m / f; 'low SES' -> lowses; trans* -> trans."""
    s = re.sub(r"\s+", "", str(text).strip().lower())
    if s in _MALE:
        return "m"
    if s in _FEMALE:
        return "f"
    if s.startswith("trans"):
        return "trans"
    return s


def option_tokens(info: Sequence[str]) -> set[str]:
    """The names an option answers to: its text and group, and both halves of 'F-Black'."""
    tokens = {norm_group(x) for x in info}
    for x in info:
        m = _PREFIXED.match(re.sub(r"\s+", "", str(x).strip().lower()))
        if m:
            tokens |= {norm_group(m.group(1)), norm_group(m.group(2))}
    return tokens


def derive_roles(answer_info: dict, stereotyped_groups: Sequence[str]) -> tuple[str, str, str]:
    """Roles of ans0..ans2 from answer_info and stereotyped_groups (see the module docstring).

    The unknown option is the one whose group is 'unknown'. Of the other two, the one whose
    text or group (normalised by `norm_group`) equals a stereotyped group is the target and
    the other the non-target; when neither or both match, both are `undetermined`.
    """
    infos = [answer_info[f"ans{k}"] for k in range(3)]
    unknown = [k for k, info in enumerate(infos) if str(info[-1]).strip().lower() == "unknown"]
    if len(unknown) != 1:
        return (UNDETERMINED,) * 3  # type: ignore[return-value]
    stereo = {norm_group(g) for g in stereotyped_groups}
    people = [k for k in range(3) if k != unknown[0]]
    hits = [k for k in people if option_tokens(infos[k]) & stereo]
    roles = [UNDETERMINED] * 3
    roles[unknown[0]] = UNKNOWN
    if len(hits) == 1:
        roles[hits[0]] = TARGET
        roles[next(k for k in people if k != hits[0])] = NONTARGET
    return tuple(roles)  # type: ignore[return-value]


def roles_from_target_loc(target_loc: int, answer_info: dict) -> tuple[str, str, str] | None:
    """Roles when the metadata names the target option; None if it points at the unknown one."""
    roles = []
    for k in range(3):
        if str(answer_info[f"ans{k}"][-1]).strip().lower() == "unknown":
            roles.append(UNKNOWN)
        else:
            roles.append(TARGET if k == target_loc else NONTARGET)
    if roles[target_loc] != TARGET or roles.count(UNKNOWN) != 1:
        return None
    return tuple(roles)  # type: ignore[return-value]


def check_item(item: Any, where: str) -> dict:
    """The item if it has every field in the published form; KdfairError naming what is wrong."""
    if not isinstance(item, dict):
        raise KdfairError(f"{where}: expected a JSON object")
    missing = [k for k in REQUIRED if k not in item]
    if missing:
        raise KdfairError(f"{where}: missing field(s) {', '.join(missing)}")
    if item["question_polarity"] not in POLARITIES:
        raise KdfairError(f"{where}: question_polarity {item['question_polarity']!r} is not neg/nonneg")
    if item["context_condition"] not in CONDITIONS:
        raise KdfairError(f"{where}: context_condition {item['context_condition']!r} is not ambig/disambig")
    if item["label"] not in (0, 1, 2) or isinstance(item["label"], bool):
        raise KdfairError(f"{where}: label {item['label']!r} is not 0, 1 or 2")
    if not isinstance(item["example_id"], int) or isinstance(item["example_id"], bool):
        raise KdfairError(f"{where}: example_id {item['example_id']!r} is not an integer")
    info = item["answer_info"]
    for k in range(3):
        value = info.get(f"ans{k}") if isinstance(info, dict) else None
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            raise KdfairError(f"{where}: answer_info.ans{k} must be [text, group], found {str(value)[:60]!r}")
    meta = item["additional_metadata"]
    if not isinstance(meta, dict) or not isinstance(meta.get("stereotyped_groups"), list):
        found = meta.get("stereotyped_groups") if isinstance(meta, dict) else meta
        raise KdfairError(f"{where}: additional_metadata.stereotyped_groups must be a list of group names, "
                          f"found {str(found)[:60]!r}")
    bad = [g for g in meta["stereotyped_groups"] if not isinstance(g, str)]
    if bad:
        raise KdfairError(f"{where}: additional_metadata.stereotyped_groups holds {bad[0]!r}, not a group name")
    for key in ("context", "question", "ans0", "ans1", "ans2", "category"):
        if not isinstance(item[key], str):
            raise KdfairError(f"{where}: field {key} must be a string")
    return item


def read_items(path: Path) -> list[dict]:
    """All items of one category file, checked."""
    return [check_item(item, where) for where, item in json_lines(path)]


def read_metadata_csv(path: Path) -> dict[tuple[str, int], tuple[int | None, str]]:
    """(category, example_id) -> (target_loc or None when empty / NA, label_type)."""
    register_input(path)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return _metadata_rows(path, csv.DictReader(fh))
    except UnicodeDecodeError as exc:
        raise KdfairError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise KdfairError(f"{path}: not a readable CSV ({exc})") from None


def _metadata_rows(path: Path, reader: csv.DictReader) -> dict[tuple[str, int], tuple[int | None, str]]:
    out: dict[tuple[str, int], tuple[int | None, str]] = {}
    need = {"category", "example_id", "target_loc"}
    if not need <= set(reader.fieldnames or ()):
        raise KdfairError(f"{path}: needs columns {', '.join(sorted(need))}; has "
                          f"{', '.join(reader.fieldnames or ())}")
    for row in reader:
        where = f"{path}:{reader.line_num}"
        try:
            key = (row["category"], int(row["example_id"]))
        except (ValueError, TypeError):
            raise KdfairError(f"{where}: example_id {row['example_id']!r} is not an integer") from None
        loc = (row["target_loc"] or "").strip()
        target = int(float(loc)) if re.fullmatch(r"[0-2](\.0)?", loc) else None
        out[key] = (target, (row.get("label_type") or "").strip() or "n/a")
    return out


def find_files(path: Path) -> tuple[list[Path], Path | None]:
    """(category .jsonl files, metadata csv or None) of a BBQ folder or a single .jsonl file."""
    if path.is_file():
        return [path], None
    folder = path / "data" if (path / "data").is_dir() else path
    # Every .jsonl here is an item file: a new one would change the dataset, so nothing is written here.
    register_input(folder, "folder")
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise KdfairError(f"{path}: no BBQ .jsonl files (expected {path}/data/<Category>.jsonl)")
    meta = path / METADATA_CSV
    return files, (meta if meta.is_file() else None)


def item_attrs(items: list[dict], roles: list[tuple[str, str, str]], label_types: list[str]) -> dict[str, np.ndarray]:
    """The attr_* columns of checked items: BBQ's fields, option roles, the label's role, item text."""
    col = lambda f: np.asarray([f(it) for it in items], dtype=object)  # noqa: E731
    attrs: dict[str, np.ndarray] = {
        "category": col(lambda it: it["category"]),
        "example_id": np.asarray([it["example_id"] for it in items], np.int64),
        "question_index": col(lambda it: str(it["question_index"])),
        "question_polarity": col(lambda it: it["question_polarity"]),
        "context_condition": col(lambda it: it["context_condition"]),
        "subcategory": col(lambda it: str(it["additional_metadata"].get("subcategory", "None"))),
        "label_type": np.asarray(label_types, dtype=object),
        **{f"role_{k}": np.asarray([r[k] for r in roles], dtype=object) for k in range(3)},
        "label_role": np.asarray([r[it["label"]] for r, it in zip(roles, items)], dtype=object),
    }
    for field in TEXT_FIELDS:
        attrs[field] = col(lambda it, f=field: it[f])
    return attrs


def bbq_attributes(categories: Sequence[str]) -> tuple[Attribute, ...]:
    """The categorical attributes and their values (the text columns are not attributes)."""
    return (Attribute("category", tuple(categories)), Attribute("question_polarity", POLARITIES),
            Attribute("context_condition", CONDITIONS),
            *(Attribute(f"role_{k}", ROLES) for k in range(3)), Attribute("label_role", ROLES))


def open_bbq(path: Path, **options: Any) -> BBQDataset:
    check_options("bbq", options, {})
    files, meta_path = find_files(Path(path))
    metadata = read_metadata_csv(meta_path) if meta_path else {}
    items: list[dict] = []
    for f in files:
        items += read_items(f)
    if not items:
        raise KdfairError(f"{path}: the BBQ files hold no items")
    extra_cats = sorted({it["category"] for it in items} - set(CATEGORIES))
    ids = np.asarray([bbq_sample_id(it["category"], it["example_id"], extra_cats) for it in items], np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[counts > 1][0])
        raise KdfairError(f"{path}: example_id {dup % ID_BLOCK} appears twice in one category")
    stats = {"items": len(items), "from_metadata": 0, "derived": 0, "undetermined": 0,
             "metadata_disagrees": 0}
    roles, label_types = [], []
    for it in items:
        derived = derive_roles(it["answer_info"], it["additional_metadata"]["stereotyped_groups"])
        target_loc, label_type = metadata.get((it["category"], it["example_id"]), (None, "n/a"))
        given = roles_from_target_loc(target_loc, it["answer_info"]) if target_loc is not None else None
        if given is not None:
            stats["from_metadata"] += 1
            stats["metadata_disagrees"] += int(UNDETERMINED not in derived and derived != given)
            roles.append(given)
        else:
            ok = UNDETERMINED not in derived
            stats["derived" if ok else "undetermined"] += 1
            roles.append(derived)
        label_types.append(label_type)
    order = np.argsort(ids, kind="stable")
    items = [items[i] for i in order]
    roles = [roles[i] for i in order]
    label_types = [label_types[i] for i in order]
    ids = ids[order]
    labels = np.asarray([it["label"] for it in items], np.int64)
    attrs = item_attrs(items, roles, label_types)
    text = np.asarray([f"{it['context']} {it['question']}" for it in items], dtype=object)
    split = Split(SPLIT, None, labels, ids, attrs, {"text": text})
    cats = tuple(sorted(set(attrs["category"])))
    fp_files = files + ([meta_path] if meta_path else [])
    info = DatasetInfo(
        name="bbq", num_classes=3, class_names=CLASS_NAMES,
        attributes=bbq_attributes(cats),
        input_shape=(), mean=(), std=(), splits=(SPLIT,), fingerprint=files_fingerprint(*fp_files),
        options={"roles": stats, "metadata_csv": str(meta_path) if meta_path else None,
                 "files": [f.name for f in files]},
        modality="text")
    return BBQDataset(info, split, str(path))


class BBQDataset:
    """BBQ held in memory: one split, `test`."""

    def __init__(self, info: DatasetInfo, split: Split, source: str) -> None:
        self.info = info
        self._split = split
        self._source = source

    def split(self, name: str) -> Split:
        if name != SPLIT:
            raise KdfairError(f"{self._source}: BBQ has only the split '{SPLIT}', not '{name}'")
        return self._split
