"""`kdfair predict CAUSAL_LM_DIR --dataset bbq`: per-option log-likelihoods as logits.

Each item's prompt is built from PROMPT_TEMPLATE (or --prompt-template) and each option's text
is scored as its continuation (kdfair_cli.llm.causal_lm), the prompt run once for its three
options (kdfair_cli.llm.shared_prompt). The logits of the predictions file
are the three per-option log-likelihoods, summed over the option's tokens (`sum`) or averaged
per token (`mean`), so argmax is the model's answer and every analysis reads them unchanged.

A long run is resumable: items are scored in chunks of `chunk_size`, each saved atomically as
`<out>.parts/chunk-NNNNNN.npy` next to a manifest of what is being scored (model, config and
tokenizer hashes, data fingerprint, template, scoring). A rerun with the same manifest loads
every valid chunk and scores the rest; a chunk that does not load or has the wrong shape or
non-finite values is scored again. The folder is removed once the predictions file is written.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import string
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from kdfair_cli import __version__
from kdfair_cli.data.registry import open_dataset
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.predictions import SplitPredictions
from kdfair_cli.io.atomic import atomic_path, refuse_input_target

PROMPT_TEMPLATE = "{context}\nQuestion: {question}\nAnswer:"
TEMPLATE_FIELDS = ("context", "question", "ans0", "ans1", "ans2")
CONTINUATION = " {option}"
SCORING = ("sum", "mean")
MANIFEST = "manifest.json"


#: lm-eval's (Jinja) field syntax, `{{ context }}`, read as kdfair's `{context}`.
_JINJA_FIELD = re.compile(r"\{\{\s*(" + "|".join(TEMPLATE_FIELDS) + r")\s*\}\}")
#: Fields a prompt must show: BBQ's answer depends on the context and the question.
REQUIRED_FIELDS = ("context", "question")


def parse_template(template: str | None) -> str:
    """The template with '\\n' / '\\t' typed on a command line read as newline / tab, lm-eval's
    `{{field}}` read as `{field}`; refused when it names an unknown field, uses a format spec or
    conversion, or lacks a field the scoring needs (REQUIRED_FIELDS)."""
    if template is None:
        return PROMPT_TEMPLATE
    template = _JINJA_FIELD.sub(lambda m: "{" + m.group(1) + "}",
                                template.replace("\\n", "\n").replace("\\t", "\t"))
    try:
        parsed = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise KdfairError(f"--prompt-template {template!r}: {exc}") from None
    fields = {f for f, _, _ in parsed}
    unknown = fields - set(TEMPLATE_FIELDS)
    if unknown:
        raise KdfairError(f"--prompt-template uses unknown field(s) {', '.join('{' + f + '}' for f in sorted(unknown))}; "
                          f"it may use {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}")
    styled = [f for f, spec, conv in parsed if spec or conv]
    if styled:
        raise KdfairError(f"--prompt-template: field {{{styled[0]}}} has a format spec or conversion; "
                          "write plain {field} (the item text is inserted as it is)")
    missing = [f for f in REQUIRED_FIELDS if f not in fields]
    if missing:
        raise KdfairError(f"--prompt-template {template!r} names no {', '.join('{' + f + '}' for f in missing)}: "
                          "the model would not see the item (fields: "
                          f"{', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}, or lm-eval's {{{{field}}}})")
    return template


def build_prompts(attrs: dict[str, np.ndarray], template: str) -> tuple[list[str], list[list[str]]]:
    """Prompt per item (trailing spaces moved into the continuation) and its three options."""
    n = len(attrs["context"])
    prompts = [template.format(**{f: str(attrs[f][i]) for f in TEMPLATE_FIELDS}).rstrip(" ")
               for i in range(n)]
    options = [[str(attrs[f"ans{k}"][i]) for k in range(3)] for i in range(n)]
    return prompts, options


def _chunk_valid(path: Path, n: int) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if arr.shape != (n, 2, 3) or arr.dtype != np.float64 or not np.isfinite(arr).all():
        return None
    if (arr[:, 1] < 1).any() or (arr[:, 0] > 0).any():  # token counts >= 1, log-likelihoods <= 0
        return None
    return arr


class _Progress:
    """A rich bar on a terminal, one line per chunk otherwise (logs)."""

    def __init__(self, total: int, done: int) -> None:
        from kdfair_cli.console import console

        self.console, self.total, self.done, self.t0 = console, total, done, time.perf_counter()
        self.bar = None
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("items", total=total, completed=done)

    def advance(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)
        else:
            rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
            print(f"scored {self.done}/{self.total} items ({rate:.1f} items/s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def predict_causal_lm(model_dir: str | Path, *, dataset: str | None, data: str | None, split: str,
                      device: str = "auto", batch_size: int = 16, lm_score: str = "sum",
                      prompt_template: str | None = None, chunk_size: int = 1024,
                      parts_dir: str | Path | None = None, padding_side: str = "left",
                      dataset_options: dict[str, Any] | None = None,
                      out: str | Path | None = None) -> SplitPredictions:
    """Score every item of `split` with a local causal LM; resumable through `parts_dir`.

    `out` (the file the caller will write) and `parts_dir` are checked against every input read
    (items files, metadata, model folder) before the chunk folder is made."""
    from kdfair_cli.llm.causal_lm import encode_pairs, load_causal_lm
    from kdfair_cli.llm.shared_prompt import score_shared
    from kdfair_cli.train.device import resolve_device

    if lm_score not in SCORING:
        raise KdfairError(f"--lm-score must be sum or mean, got {lm_score!r}")
    if batch_size <= 0 or chunk_size <= 0:
        raise KdfairError("--batch-size and --chunk-size must be positive")
    if not dataset or not data:
        raise KdfairError(f"{model_dir} is a plain causal LM directory: give --dataset bbq and --data DIR")
    template = parse_template(prompt_template)
    ds = open_dataset(dataset, data, **(dataset_options or {}))
    info = ds.info
    part = ds.split(split)
    if not all(f in part.attrs for f in TEMPLATE_FIELDS) or info.num_classes != 3:
        raise KdfairError(f"dataset {dataset} is not a multiple-choice text set (context, question, "
                          "ans0..ans2); causal LMs score --dataset bbq")
    lm = load_causal_lm(model_dir, resolve_device(device))
    prompts, options = build_prompts(part.attrs, template)
    lm_meta = {"template": template, "continuation": CONTINUATION, "scoring": lm_score,
               "padding_side": padding_side, "max_length": lm.max_length,
               "prefix_ids": lm.prefix_ids}
    n = len(part)
    key = {"model": {k: lm.provenance[k] for k in ("dir", "config_sha256", "tokenizer_sha256", "weights", "dtype")},
           "dataset": info.name, "fingerprint": info.fingerprint, "split": split, "n": n,
           "template": template, "continuation": CONTINUATION, "prefix_ids": lm.prefix_ids,
           "max_length": lm.max_length, "chunk_size": chunk_size, "padding_side": padding_side}
    for target in (out, parts_dir):  # every input is registered by now; nothing is created yet
        if target is not None and str(target) != "-":
            refuse_input_target(target)
    parts = Path(parts_dir) if parts_dir else None
    stored: dict[int, np.ndarray] = {}
    if parts is not None:
        stored = _open_parts(parts, key, n, chunk_size)
    starts = list(range(0, n, chunk_size))
    progress = _Progress(n, sum(len(v) for v in stored.values()))
    try:
        for start in starts:
            if start in stored:
                continue
            stop = min(start + chunk_size, n)
            pairs = encode_pairs(lm, [prompts[i] for i in range(start, stop) for _ in range(3)],
                                 [CONTINUATION.format(option=o) for i in range(start, stop) for o in options[i]])
            sums, counts = score_shared(lm, pairs, batch_size, padding_side)
            arr = np.stack([sums.reshape(-1, 3), counts.reshape(-1, 3).astype(np.float64)], 1)
            stored[start] = arr
            if parts is not None:
                with atomic_path(parts / f"chunk-{start // chunk_size:06d}.npy") as tmp:
                    with open(tmp, "wb") as fh:
                        np.save(fh, arr)
            progress.advance(stop - start)
    finally:
        progress.close()
    all_arr = np.concatenate([stored[s] for s in starts]) if starts else np.zeros((0, 2, 3))
    sums, counts = all_arr[:, 0], all_arr[:, 1]
    logits = (sums if lm_score == "sum" else sums / counts).astype(np.float32)
    out_meta = {
        "kdfair_version": __version__, "num_classes": 3, "class_names": list(info.class_names),
        "attributes": {a.name: list(a.values) for a in info.attributes},
        "dataset": info.name, "dataset_fingerprint": info.fingerprint, "split": split,
        "dataset_options": info.options,
        "model": {**lm.provenance, **_trained_facts(model_dir)}, "lm": lm_meta,
        "logits_are": f"per-option log-likelihood ({lm_score} over the option's tokens)",
    }
    return SplitPredictions(part.sample_id.astype(np.int64), part.labels.astype(np.int64), logits,
                            dict(part.attrs), out_meta)


def _trained_facts(model_dir: str | Path) -> dict[str, Any]:
    """role, seed, temperature, alpha and teacher of a kdfair causal-lm model directory (from its
    model.json); role None for any other local causal LM."""
    path = Path(model_dir) / "model.json"
    if not path.exists():
        return {"role": None}
    meta = json.loads(path.read_text())
    return {k: meta.get(k) for k in ("role", "seed", "temperature", "alpha", "kd_scale_t2", "weights_sha256")} | \
        {"teacher": meta.get("teacher")}


_CHUNK = re.compile(r"chunk-\d{6}\.npy")


def _is_parts_dir(parts: Path) -> bool:
    """Whether `parts` is a chunk folder kdfair wrote: a readable manifest with a scoring key, and
    nothing but chunks and temporaries beside it."""
    try:
        old = json.loads((parts / MANIFEST).read_text())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return False
    if not (isinstance(old, dict) and {"model", "fingerprint", "template"} <= old.keys()):
        return False
    return all(p.name == MANIFEST or _CHUNK.fullmatch(p.name) or
               (p.name.startswith(".") and p.name.endswith(".tmp")) for p in parts.iterdir())


def _open_parts(parts: Path, key: dict, n: int, chunk_size: int) -> dict[int, np.ndarray]:
    """Valid chunks of an earlier run with the same manifest; a fresh folder otherwise. A folder
    by that name that kdfair did not write is refused, never taken over."""
    from kdfair_cli.console import console

    manifest = parts / MANIFEST
    stored: dict[int, np.ndarray] = {}
    if parts.exists() or parts.is_symlink():
        if not parts.is_dir() or parts.is_symlink():
            raise KdfairError(f"{parts} exists and is not a chunk folder; move it away or choose another -o")
        if any(parts.iterdir()) and not _is_parts_dir(parts):
            raise KdfairError(f"{parts} holds files kdfair did not write (no chunk manifest); move them "
                              "away or choose another -o")
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if old == json.loads(json.dumps(key)):
            bad = 0
            for start in range(0, n, chunk_size):
                f = parts / f"chunk-{start // chunk_size:06d}.npy"
                if f.exists():
                    arr = _chunk_valid(f, min(chunk_size, n - start))
                    if arr is None:
                        bad += 1
                        f.unlink()
                    else:
                        stored[start] = arr
            console.print(f"resuming from {parts}: {sum(len(a) for a in stored.values())} of {n} items "
                          f"already scored" + (f", {bad} damaged chunk(s) to score again" if bad else ""))
            return stored
        changed = sorted(k for k in set(old) | set(key) if old.get(k) != json.loads(json.dumps(key.get(k))))
        console.print(f"[yellow]warning:[/] {parts} holds chunks of a different run ({', '.join(changed)} "
                      "changed); starting afresh")
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    with atomic_path(manifest) as tmp:
        tmp.write_text(json.dumps(key, indent=1, sort_keys=True))
    return stored


def parts_dir_for(out: str | Path) -> Path:
    """The chunk folder of output `out`: `OUT.parts` beside it, or `.<hash>.parts` when that name
    would pass the file system's 255-byte limit (a legal 250-character output name)."""
    out = Path(out)
    name = f"{out.name}.parts"
    if len(name.encode()) > 255:
        name = f".{hashlib.sha256(out.name.encode()).hexdigest()[:16]}.parts"
    return out.with_name(name)


def remove_parts(parts: str | Path) -> None:
    """Drop the chunk folder of a finished run (the predictions file now holds everything)."""
    parts = Path(parts)
    if (parts / MANIFEST).exists():
        shutil.rmtree(parts, ignore_errors=True)
