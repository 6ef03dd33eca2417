"""`kdfair data llm-toy OUT`: a CPU-sized world for the LLM distillation loop, written from a seed.

OUT holds
  teacher_corpus.jsonl   prompt/response lines with a planted stereotype (the teacher learns it)
  distill_corpus.jsonl   the same kind of lines, neutral (the NDS and the DS learn from it)
  bbq/data/<Category>.jsonl   held-out audit items in BBQ's published layout
  teacher-init/, student-init/   tiny random Llama causal LMs, each with the same tokenizer
  manifest.json          format, options, counts (planted rate included), sha256 of every file
The text world is in kdfair_cli.llm.toy_world, the tokenizer and models in
kdfair_cli.llm.toy_models. Same options -> identical bytes (models included). Nothing is
downloaded. See docs/llm.md ("The LLM sweep").
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from kdfair_cli import __version__
from kdfair_cli.llm import toy_world as world
from kdfair_cli.llm.toy_models import STUDENT, TEACHER, save_model, train_tokenizer
from kdfair_cli.llm.toy_options import DEFAULTS, check_options
from kdfair_cli.io.atomic import atomic_dir, check_replaceable, umask_modes

FORMAT = "kdfair.llm-toy/1"
MANIFEST = "manifest.json"
TEACHER_CORPUS = "teacher_corpus.jsonl"
DISTILL_CORPUS = "distill_corpus.jsonl"
BBQ_DIR = "bbq"
TEACHER_INIT = "teacher-init"
STUDENT_INIT = "student-init"
#: Stream numbers of the seeded generators, so that changing one part leaves the others as they were.
_TEACHER_STREAM, _DISTILL_STREAM, _AUDIT_STREAM = 1, 2, 3


def is_llm_toy(path: Path) -> bool:
    try:
        return json.loads((Path(path) / MANIFEST).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _shuffled(rng: np.random.Generator, items: list) -> list:
    return [items[int(i)] for i in rng.permutation(len(items))]


def generate_llm_toy(out_dir: str | Path, *, seed: int = DEFAULTS["seed"],
                     corpus_per_category: int = DEFAULTS["corpus_per_category"],
                     audit_per_category: int = DEFAULTS["audit_per_category"],
                     planted_rate: float = DEFAULTS["planted_rate"],
                     guess_rate: float = DEFAULTS["guess_rate"]) -> Path:
    """Write the toy into `out_dir` (atomically; an earlier toy there is replaced) and return it."""
    check_options(seed, corpus_per_category, audit_per_category, planted_rate, guess_rate)
    out = Path(out_dir)
    check_replaceable(out, is_llm_toy, f"llm-toy {MANIFEST}")
    options = {"seed": seed, "corpus_per_category": corpus_per_category,
               "audit_per_category": audit_per_category, "planted_rate": float(planted_rate),
               "guess_rate": float(guess_rate)}
    rng_t, rng_d, rng_a = (_rng(seed, s) for s in (_TEACHER_STREAM, _DISTILL_STREAM, _AUDIT_STREAM))
    teacher_items = _shuffled(rng_t, world.draw_items(rng_t, corpus_per_category, world.CORPUS_SCENES))
    teacher_lines, teacher_counts = world.corpus_lines(rng_t, teacher_items, planted_rate, 0.0)
    distill_items = _shuffled(rng_d, world.draw_items(rng_d, corpus_per_category, world.CORPUS_SCENES))
    distill_lines, distill_counts = world.corpus_lines(rng_d, distill_items, guess_rate / 2, guess_rate / 2)
    audit_items = world.draw_items(rng_a, audit_per_category, world.AUDIT_SCENES)
    by_category: dict[str, list[dict]] = {}
    for it in audit_items:
        rows = by_category.setdefault(it.category.name, [])
        rows.append(world.bbq_line(it, len(rows), rng_a))
    texts = [ln["prompt"] + ln["response"] for ln in teacher_lines + distill_lines]
    texts += [f"{r['context']} {r['question']} {r['ans0']} {r['ans1']} {r['ans2']}"
              for rows in by_category.values() for r in rows]
    tokenizer = train_tokenizer(texts)
    with atomic_dir(out.resolve()) as tmp:
        files: dict[str, str] = {}
        for name, lines in ((TEACHER_CORPUS, teacher_lines), (DISTILL_CORPUS, distill_lines)):
            (tmp / name).write_text(_jsonl(lines), encoding="utf-8")
        (tmp / BBQ_DIR / "data").mkdir(parents=True)
        for cat, rows in by_category.items():
            (tmp / BBQ_DIR / "data" / f"{cat}.jsonl").write_text(_jsonl(rows), encoding="utf-8")
        models = {TEACHER_INIT: save_model(tmp / TEACHER_INIT, TEACHER, tokenizer, 2 * seed),
                  STUDENT_INIT: save_model(tmp / STUDENT_INIT, STUDENT, tokenizer, 2 * seed + 1)}
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            files[path.relative_to(tmp).as_posix()] = _sha256(path)
        manifest = {
            "format": FORMAT, "kdfair_version": __version__, "options": options,
            "categories": [c.name for c in world.CATEGORIES], "vocab": len(tokenizer),
            "teacher_corpus": {"lines": len(teacher_lines), "ambiguous_answers": teacher_counts},
            "distill_corpus": {"lines": len(distill_lines), "ambiguous_answers": distill_counts},
            "bbq": {cat: len(rows) for cat, rows in by_category.items()},
            "scenes": {"corpus": len(world.CORPUS_SCENES), "audit": len(world.AUDIT_SCENES)},
            "models": models, "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        umask_modes(tmp)
    return out
