"""What each cell of an LLM sweep does (kdfair_cli.llm.sweep.cells lists them).

Every function writes only inside its cell's folder, each file atomically; the runner
(kdfair_cli.sweep.runner.run_cell) holds the cell's lock and writes cell.json last. They call
the library behind the commands: train_model (train-teacher / distill), write_teacher_cache
(predict --dataset corpus --top-k), generate_corpus (generate --dataset corpus), predict_causal_lm
(predict --dataset bbq), generate_bbq (generate --dataset bbq) and bias_score (bias-score), so a
cell records what the commands give by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from kdfair_cli.api.bias_score import bias_score
from kdfair_cli.llm.toy import MANIFEST as TOY_MANIFEST, generate_llm_toy
from kdfair_cli.llm.toy_options import DEFAULTS as TOY_DEFAULTS
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import atomic_path, write_text_atomic
from kdfair_cli.io.modeldir import META
from kdfair_cli.sweep.cell import Cell, train_once
from kdfair_cli.llm.sweep.cells import CACHE, GENERATED, TEACHER
from kdfair_cli.llm.sweep.spec import LLMSweepSpec

PREDS = "preds.parquet"
METRICS = "metrics.json"
FLIPS = "flips.parquet"


def toy_made(spec: LLMSweepSpec) -> bool:
    """Whether data.path holds the toy [data.generate] asks for; KdfairError when it holds one made
    with other options (the cells' hashes would not match what is on disk)."""
    assert spec.data_path is not None and spec.generate is not None
    try:
        made = json.loads((spec.data_path / TOY_MANIFEST).read_text())["options"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    wanted = {**TOY_DEFAULTS, **spec.generate}
    if made != wanted:
        diff = ", ".join(f"{k} {made.get(k)!r} (spec: {v!r})" for k, v in wanted.items() if made.get(k) != v)
        raise KdfairError(f"{spec.source}: data.path {spec.data_path} holds an LLM toy made with other options: "
                          f"{diff}; remove it or give another data.path")
    return True


def make_toy(spec: LLMSweepSpec) -> None:
    assert spec.data_path is not None and spec.generate is not None
    generate_llm_toy(spec.data_path, **spec.generate)


def _cells(sweep_dir: Path) -> Path:
    return Path(sweep_dir).resolve() / "cells"


def teacher_dir(spec: LLMSweepSpec, sweep_dir: Path) -> Path:
    """The teacher's model directory: the trained teacher cell's, or the pretrained one as is."""
    return _cells(sweep_dir) / TEACHER / "model" if spec.teacher_trained else spec.teacher_pretrained


def model_dir(spec: LLMSweepSpec, model: str, sweep_dir: Path) -> Path:
    return teacher_dir(spec, sweep_dir) if model == TEACHER else _cells(sweep_dir) / model / "model"


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(doc, indent=2, default=str) + "\n")


def lm_train_work(spec: LLMSweepSpec, cell: Cell, sweep_dir: Path, device: str, verbose: bool) -> dict[str, Any]:
    """Train the teacher, an NDS or a DS (resuming a saved state); metrics.json from model.json."""
    conf = cell.config
    out = cell.dir(sweep_dir) / "model"
    teacher = logits = generated = None
    if conf["role"] == "ds":
        if spec.sequence:
            generated = str(_cells(sweep_dir) / conf["corpus"] / GENERATED)
        elif spec.distillation == "offline":
            logits = str(_cells(sweep_dir) / CACHE / "cache")
        else:
            teacher = str(teacher_dir(spec, sweep_dir))
    cfg = spec.train_config(conf["role"], conf["seed"], str(out), temperature=conf.get("temperature"),
                            teacher_logits=logits, teacher=teacher, generated=generated)
    cfg.device = device
    train_once(cfg, verbose)
    meta = json.loads((out / META).read_text())
    metrics = {"role": conf["role"], "seed": conf["seed"], "temperature": conf.get("temperature"),
               **meta["final_metrics"], "train_seconds": meta.get("train_seconds"),
               "parameters": meta.get("parameters"), "teacher": meta.get("teacher")}
    _write_json(cell.dir(sweep_dir) / METRICS, metrics)
    return {k: metrics[k] for k in ("val_loss", "val_acc") if k in metrics}


def lm_cache_work(spec: LLMSweepSpec, cell: Cell, sweep_dir: Path, device: str, verbose: bool) -> dict[str, Any]:
    """The teacher's top-k cache over the corpus, for every temperature of the grid."""
    from kdfair_cli.llm.cache import write_teacher_cache

    conf = cell.config
    manifest = write_teacher_cache(teacher_dir(spec, sweep_dir), spec.corpus, cell.dir(sweep_dir) / "cache",
                                   top_k=conf["top_k"], temperatures=conf["temperatures"],
                                   max_length=conf["max_length"], batch_size=conf["batch_size"], device=device,
                                   force=True, verbose=verbose)
    return {"n_sequences": manifest["n_sequences"], "n_tokens": manifest["n_tokens"]}


def lm_generate_work(spec: LLMSweepSpec, cell: Cell, sweep_dir: Path, device: str, verbose: bool) -> dict[str, Any]:
    """The teacher's sequence-level corpus at sampling temperature T (corpus.jsonl and its
    provenance sidecar): its responses to data.prompts, or to the prompts of data.corpus (the
    NDS's corpus, so that NDS and DS see the same prompts and differ in whose answers they learn)."""
    from kdfair_cli.io.jsonl import json_lines
    from kdfair_cli.llm.generate import generate_corpus, open_engine
    from kdfair_cli.llm.sequence import corpus_file

    conf, d = cell.config, cell.dir(sweep_dir)
    prompts = spec.prompts
    if prompts is None:
        prompts = d / "prompts.jsonl"
        rows = []
        for i, (at, row) in enumerate(json_lines(corpus_file(spec.corpus))):
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise KdfairError(f"{at}: a sequence sweep asks the teacher the corpus's prompts, and this "
                                  "line has no 'prompt'; give data.prompts")
            rows.append({"prompt": row["prompt"], "id": row.get("id", i)})
        write_text_atomic(prompts, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    teacher = teacher_dir(spec, sweep_dir)
    sampling = spec.sampling(conf["temperature"], conf["seed"])
    lm, engine = open_engine(teacher, device=device, batch_size=spec.setting("ds", "batch_size"), seed=sampling.seed)
    prov = generate_corpus(teacher, prompts, d / GENERATED, sampling=sampling, engine=engine, lm=lm,
                           chat=spec.generation.get("chat") if spec.generation else None)
    return {"n_prompts": prov["n_prompts"], "n_lines": prov["n_lines"]}


def _generation_audit(spec: LLMSweepSpec, model: Path, audit: dict[str, Any], device: str, out: Path) -> None:
    """A generation audit (`kdfair generate MODEL --dataset bbq`), greedy by default: one run."""
    from kdfair_cli.llm.answers import parse_think_tags
    from kdfair_cli.llm.generate import Sampling, generate_bbq, open_engine, write_generation_file

    sampling = Sampling(max_new_tokens=audit["max_new_tokens"], temperature=audit["temperature"],
                        seed=audit["seed"])
    lm, engine = open_engine(model, device=device, batch_size=audit["batch_size"], seed=sampling.seed)
    (run,) = generate_bbq(model, spec.bbq, sampling=sampling, engine=engine, lm=lm, chat=audit["chat"],
                          think_tags=parse_think_tags(audit["think_tags"]), template=audit["prompt_template"])
    write_generation_file(out, run)


def audit_work(spec: LLMSweepSpec, cell: Cell, sweep_dir: Path, device: str) -> dict[str, Any]:
    """The model's BBQ answers (preds.parquet: scored by log-likelihood, or generated and read from
    the text) and its bias scores with intervals (metrics.json)."""
    from kdfair_cli.llm.scoring import predict_causal_lm

    audit, d = cell.config["audit"], cell.dir(sweep_dir)
    model = model_dir(spec, cell.config["model"], sweep_dir)
    if audit.get("method") == "generate":
        _generation_audit(spec, model, audit, device, d / PREDS)
    else:
        parts = d / f"{PREDS}.parts"
        preds = predict_causal_lm(model, dataset="bbq", data=str(spec.bbq), split="test", device=device,
                                  batch_size=audit["batch_size"], lm_score=audit["lm_score"],
                                  prompt_template=audit["prompt_template"], parts_dir=parts)
        preds.write(d / PREDS)
        shutil.rmtree(parts, ignore_errors=True)
    scores = bias_score([d / PREDS], n_boot=audit["bootstrap"], confidence=audit["confidence"],
                        seed=audit["seed"]).to_dict()
    _write_json(d / METRICS, {"model": cell.config["model"], "scores": scores})
    overall = scores["overall"]
    return {k: overall[k] for k in ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig")}


def compare_work(spec: LLMSweepSpec, cell: Cell, sweep_dir: Path) -> dict[str, Any]:
    """DS at T against the NDS over the seeds (run k = seed k on both sides), or against the
    teacher (its one run paired with every DS seed): paired permutation test per metric and
    category, and the items whose answer flips."""
    audit, d, cells = cell.config["audit"], cell.dir(sweep_dir), _cells(sweep_dir)
    against = cell.config.get("against", "nds")
    ds = [cells / dep / PREDS for dep in cell.deps if dep.startswith("audit-ds-")]
    other = [cells / dep / PREDS for dep in cell.deps if not dep.startswith("audit-ds-")]
    res = bias_score(ds, versus=other, n_boot=audit["bootstrap"], confidence=audit["confidence"],
                     n_perm=audit["permutations"], seed=audit["seed"])
    with atomic_path(d / FLIPS) as tmp:
        res.flips.to_parquet(tmp, index=False)
    doc = res.to_dict()
    _write_json(d / METRICS, {"temperature": cell.config["temperature"], "against": against, "comparison": doc})
    versus = doc["overall"]["versus"]
    return {k: versus[k]["p_value"] for k in versus}
