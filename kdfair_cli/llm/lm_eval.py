"""lm-evaluation-harness `--log_samples` output of its bbq tasks -> a BBQ predictions table.

Each line of samples_<task>_<date>.jsonl is one document: `doc` (the BBQ item as the harness
read it), `arguments` ({"gen_args_i": {"arg_0": prompt, "arg_1": " choice"}}, or the older list
of [prompt, choice]), `resps` / `filtered_resps` (per choice [log-likelihood, is_greedy], as
strings since lm-eval sanitises them), `filter`, `target`, and per-doc metrics. The harness's
multiple-choice bbq task offers 12 choices: the item's two people followed by ten "unknown"
paraphrases (the item's own unknown answer among them). Choices are mapped onto BBQ's three
options by their text; the unknown option takes the log-likelihood of the item's own unknown
text (`unknown="own"`, BBQ's three-way question) or the best of the ten paraphrases
(`unknown="max"`, what the harness's argmax answers). Roles come from the doc's answer_info and
stereotyped_groups (kdfair_cli.llm.bbq.derive_roles); sample ids are bbq_sample_id, so an
imported file pairs with `kdfair predict ... --dataset bbq` item by item.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdfair_cli import __version__
from kdfair_cli.llm.bbq import (CATEGORIES, CLASS_NAMES, SPLIT, UNDETERMINED, UNKNOWN, bbq_attributes,
                                 bbq_sample_id, check_item, derive_roles, item_attrs)
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import register_input
from kdfair_cli.io.jsonl import json_lines
from kdfair_cli.io.predictions import SplitPredictions

UNKNOWN_MODES = ("own", "max")


def _choices(arguments: Any, where: str) -> list[str]:
    if isinstance(arguments, dict):
        keys = sorted(arguments, key=lambda k: int(k.rsplit("_", 1)[-1]) if k.rsplit("_", 1)[-1].isdigit() else -1)
        try:
            return [str(arguments[k]["arg_1"]) for k in keys]
        except (KeyError, TypeError):
            raise KdfairError(f"{where}: 'arguments' entries need arg_1 (the choice text)") from None
    if isinstance(arguments, list) and all(isinstance(a, list) and len(a) >= 2 for a in arguments):
        return [str(a[1]) for a in arguments]
    raise KdfairError(f"{where}: 'arguments' is neither {{gen_args_i: {{arg_0, arg_1}}}} nor a list of "
                      "[prompt, choice]")


def _logliks(sample: dict, n: int, where: str) -> np.ndarray:
    if "filtered_resps" in sample:
        raw = [r[0] if isinstance(r, list) else r for r in sample["filtered_resps"]]
    elif "resps" in sample:
        raw = [r[0][0] if isinstance(r, list) and r and isinstance(r[0], list) else r for r in sample["resps"]]
    else:
        raise KdfairError(f"{where}: no 'filtered_resps' or 'resps'")
    try:
        values = np.asarray([float(x) for x in raw], dtype=np.float64)
    except (TypeError, ValueError):
        raise KdfairError(f"{where}: responses are not log-likelihoods (a generate_until task?); "
                          "import the multiple-choice bbq tasks") from None
    if values.shape != (n,) or not np.isfinite(values).all():
        raise KdfairError(f"{where}: expected {n} finite log-likelihoods, one per choice, got {len(raw)}")
    return values


def map_options(doc: dict, choices: list[str], lls: np.ndarray, roles: tuple[str, str, str],
                unknown: str, where: str) -> np.ndarray:
    """Log-likelihoods of ans0..ans2 from the harness's choices (matched by stripped text)."""
    texts = [c.strip() for c in choices]
    out = np.zeros(3)
    people = {doc[f"ans{k}"].strip() for k in range(3) if roles[k] != "unknown"}
    for k in range(3):
        answer = doc[f"ans{k}"].strip()
        if roles[k] == "unknown" and unknown == "max":
            others = [j for j, t in enumerate(texts) if t not in people]
            out[k] = lls[others].max()
            continue
        if answer not in texts:
            raise KdfairError(f"{where}: answer ans{k} {answer!r} is not among the harness's choices")
        out[k] = lls[texts.index(answer)]
    return out


def _refuse_results_file(path: Path) -> None:
    """lm-eval's results_<date>.json given where its samples belong: say so, not "not JSON"."""
    if path.suffix != ".json":
        return
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError, OSError):
        return
    if isinstance(doc, dict) and ("results" in doc or "configs" in doc):
        raise KdfairError(f"{path} is lm-eval's results file, not its samples: give the "
                          "samples_<task>_<date>.jsonl that --log_samples writes beside it")


def sibling_results(samples: Path) -> Path | None:
    """The results_<date>.json lm-eval wrote in the same run as `samples` (same date suffix), or the
    only results file in the folder; None when there is none to tell."""
    found = sorted(samples.parent.glob("results_*.json"))
    stamp = samples.stem.rsplit("_", 1)[-1]
    same = [f for f in found if f.stem.removeprefix("results_") == stamp]
    return same[0] if same else (found[0] if len(found) == 1 else None)


def read_run_config(results: Path, tasks: Sequence[str]) -> dict[str, Any]:
    """model_args, few-shot, limit and the tasks' configs from a results file (what the import
    records); KdfairError naming the file when it is not one."""
    register_input(results)
    try:
        doc = json.loads(results.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise KdfairError(f"{results}: not a readable lm-eval results file ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise KdfairError(f"{results}: not an lm-eval results file (expected a JSON object)")
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    configs = doc.get("configs") if isinstance(doc.get("configs"), dict) else {}
    n_shot = doc.get("n-shot") if isinstance(doc.get("n-shot"), dict) else {}
    task_cfg = {t: configs[t] for t in tasks if isinstance(configs.get(t), dict)}
    keep = ("task", "dataset_path", "dataset_name", "test_split", "doc_to_text", "doc_to_choice",
            "doc_to_target", "target_delimiter", "fewshot_delimiter", "num_fewshot", "output_type",
            "metadata")
    return {"results_file": str(results.resolve()), "model": config.get("model"),
            "model_args": config.get("model_args"), "limit": config.get("limit"),
            "bootstrap_iters": config.get("bootstrap_iters"),
            "lm_eval_version": doc.get("lm_eval_version"),
            "num_fewshot": {t: n_shot.get(t) for t in tasks} if n_shot else None,
            "n_samples": doc.get("n-samples"),
            "task_configs": {t: {k: c.get(k) for k in keep if k in c} for t, c in task_cfg.items()}}


def _task_of(path: Path) -> str:
    """samples_<task>_<date>.jsonl -> task."""
    stem = path.stem.removeprefix("samples_")
    return stem.rsplit("_", 1)[0] if "_" in stem else stem


def _read_samples(path: Path) -> list[tuple[str, dict, list[str], np.ndarray, str]]:
    if not path.is_file():
        raise KdfairError(f"{path}: file does not exist")
    _refuse_results_file(path)
    rows = []
    for where, sample in json_lines(path):
        if not isinstance(sample, dict) or "doc" not in sample or "arguments" not in sample:
            raise KdfairError(f"{where}: not an lm-eval sample (needs 'doc' and 'arguments')")
        doc = check_item(sample["doc"], f"{where}: doc")
        choices = _choices(sample["arguments"], where)
        rows.append((str(sample.get("filter", "none")), doc, choices, _logliks(sample, len(choices), where),
                     str(path)))
    if not rows:
        raise KdfairError(f"{path}: no samples")
    return rows


def read_lm_eval_samples(paths: str | Path | Sequence[str | Path], *, unknown: str = "own",
                         filter_name: str | None = None, results: str | Path | None = None) -> SplitPredictions:
    """The BBQ predictions of one or several samples files of one run (lm-eval's bbq, or its
    bbq_ambig and bbq_disambig tasks: one file each); see the module docstring. The run's results
    file (given, or the samples' sibling) adds model_args, few-shot, limit and the task configs to
    the metadata; `meta["lm"]["lm_eval"]["limit"]` tells the caller when --limit cut the items."""
    if unknown not in UNKNOWN_MODES:
        raise KdfairError(f"--unknown must be own or max, got {unknown!r}")
    files = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not files:
        raise KdfairError("give at least one samples file")
    rows: list[tuple[str, dict, list[str], np.ndarray, str]] = []
    for f in files:
        rows += _read_samples(f)
    path = files[0]
    filters = sorted({r[0] for r in rows})
    if filter_name:
        chosen = filter_name if filter_name in filters else None
    else:
        chosen = filters[0] if len(filters) == 1 else ("none" if "none" in filters else None)
    if chosen is None:
        asked = f"--filter {filter_name}: " if filter_name else ""
        raise KdfairError(f"{asked}{path} holds filters {', '.join(filters)}; choose one with --filter")
    rows = [r for r in rows if r[0] == chosen]
    extra = sorted({r[1]["category"] for r in rows} - set(CATEGORIES))
    ids = np.asarray([bbq_sample_id(r[1]["category"], r[1]["example_id"], extra) for r in rows], np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[counts > 1][0])
        where = sorted({r[4] for r, i in zip(rows, ids) if i == dup})
        raise KdfairError(f"{', '.join(where)}: the item {dup % 1_000_000} of one category appears twice "
                          f"(filter {chosen}); give each samples file once")
    order = np.argsort(ids, kind="stable")
    docs, roles, logits = [], [], []
    for i in order:
        _, doc, choices, lls, source = rows[i]
        r = derive_roles(doc["answer_info"], doc["additional_metadata"]["stereotyped_groups"])
        if UNKNOWN not in r:
            r = (UNDETERMINED,) * 3
        docs.append(doc)
        roles.append(r)
        logits.append(map_options(doc, choices, lls, r, unknown, f"{source}: doc {doc['category']}/{doc['example_id']}"))
    attrs = item_attrs(docs, roles, ["n/a"] * len(docs))
    n_und = sum(UNDETERMINED in r for r in roles)
    tasks = [_task_of(f) for f in files]
    results_path = Path(results) if results else sibling_results(path)
    run = read_run_config(results_path, tasks) if results_path else {"results_file": None}
    cfgs = run.get("task_configs") or {}
    first = next(iter(cfgs.values()), {})
    fewshot = sorted({v for v in (run.get("num_fewshot") or {}).values() if v is not None})
    harness = {**run, "tasks": tasks, "doc_to_text": first.get("doc_to_text"),
               "target_delimiter": first.get("target_delimiter"),
               "num_fewshot": fewshot[0] if len(fewshot) == 1 else (fewshot or None)}
    meta = {
        "kdfair_version": __version__, "num_classes": 3, "class_names": list(CLASS_NAMES),
        "attributes": {a.name: list(a.values) for a in bbq_attributes(sorted(set(attrs["category"])))},
        "dataset": "bbq", "dataset_fingerprint": None, "split": SPLIT,
        "dataset_options": {"roles": {"items": len(docs), "derived": len(docs) - n_und, "undetermined": n_und}},
        "model": {"dir": None, "arch": None, "role": None, "lm_eval_model": path.parent.name,
                  "model_args": run.get("model_args")},
        "lm": {"source": "lm-evaluation-harness --log_samples", "file": str(path.resolve()),
               "files": [str(f.resolve()) for f in files],
               "filter": chosen, "unknown": unknown, "scoring": "sum",
               "n_choices": sorted({len(r[2]) for r in rows}), "lm_eval": harness},
        "logits_are": "per-option log-likelihood from lm-evaluation-harness (sum over the option's tokens)",
    }
    return SplitPredictions(ids[order], np.asarray([d["label"] for d in docs], np.int64),
                            np.asarray(logits, np.float32), attrs, meta)
