"""The objective of a causal LM in the shared loop: next-token CE, or token-level distillation.

Roles teacher and nds learn the corpus's learned tokens with cross-entropy. Role ds adds the
paper's KD term per token, against
- a live teacher (`--teacher DIR`: a local transformers causal LM, or a kdfair causal-lm model
  directory), run without gradients on the student's own batch: the teacher reads the same
  token ids, so both tokenizers must map every token to the same id (checked, ids not sizes);
- or a top-k cache (`--teacher-logits CACHE_DIR`, written once by `kdfair predict TEACHER
  --dataset corpus --top-k K`): it must come from the same corpus file (fingerprint), with the
  same vocabulary, leading special tokens, EOS and max_length, and its target tokens and
  per-line token counts must match the student's tokenisation; T must be one of the cache's
  temperatures (the lumped tail mass is stored per temperature).
The loss is computed in chunks of LOSS_CHUNK tokens (kdfair_cli.llm.kd_loss).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdfair_cli.data.base import Split
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.align import rows_for_ids
from kdfair_cli.llm.topk_cache import read_cache
from kdfair_cli.llm.trainee import (
    CausalLMTrainee, LMBatches, check_positions, check_same_tokenizer, encoding_identity, learned_rows,
    load_lm_dir, tokenizer_identity, weights_sha256,
)
from kdfair_cli.train.config import TrainConfig
from kdfair_cli.llm.kd_loss import TopKTargets, chunked_token_loss
from kdfair_cli.train.loop import Evaluator, Objective, StepLoss, autocast

#: Mean teacher tail mass (outside the cached top k) above which distill warns.
TAIL_WARN = 0.25
#: Tokens per loss chunk: the [chunk, vocabulary] logits are the largest tensor the loss holds.
LOSS_CHUNK = 1024
#: source(index, x) -> teacher(start, end): the teacher's targets for the batch's learned rows start:end
TeacherSource = Callable[[torch.Tensor, torch.Tensor], Callable[[int, int], Any]]


def live_lm_teacher(cfg: TrainConfig, trainee: CausalLMTrainee, device: torch.device) -> tuple[TeacherSource, dict]:
    """A frozen teacher LM whose logits are applied per chunk of the batch's learned rows."""
    path = Path(str(cfg.teacher))
    hf, tok = load_lm_dir(path, "teacher")
    check_same_tokenizer(tok, trainee.tokenizer, str(path), str(cfg.pretrained))
    check_positions(hf, trainee.max_length, "teacher", path)
    model = CausalLMTrainee(hf, tok, trainee.max_length).to(device).eval()
    if device.type == "cuda" and cfg.amp:  # a frozen teacher needs no float32 master weights
        model.to(torch.bfloat16)
    for p in model.parameters():
        p.requires_grad_(False)

    def source(index: torch.Tensor, x: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
        with torch.no_grad():
            rows, _ = learned_rows(model(x), x)

        def teacher(start: int, end: int) -> torch.Tensor:
            with torch.no_grad():
                return model.head(rows[start:end]).float()

        return teacher

    provenance = {"mode": "online", "dir": str(path.resolve()), "arch": hf.config.model_type,
                  "weights_sha256": weights_sha256(path), "tokenizer": tokenizer_identity(tok)}
    return source, provenance


def cached_lm_teacher(cfg: TrainConfig, trainee: CausalLMTrainee, batches: LMBatches, train: Split,
                      device: torch.device, info_fingerprint: str) -> tuple[TeacherSource, dict]:
    """Top-k teacher targets from a cache, checked against the student's tokenisation."""
    path = Path(str(cfg.teacher_logits))
    cache = read_cache(path)
    manifest = cache.manifest
    ident = tokenizer_identity(trainee.tokenizer)
    if (manifest.get("tokenizer") or {}).get("vocab_sha256") != ident["vocab_sha256"]:
        raise KdfairError(f"--teacher-logits {path} was made with another tokenizer than the student's "
                          f"({cfg.pretrained}): token ids differ; token-level distillation needs the same tokenizer")
    corpus = manifest.get("corpus") or {}
    if corpus.get("fingerprint") != info_fingerprint:
        raise KdfairError(f"--teacher-logits {path} was made from another corpus ({corpus.get('path')}, "
                          f"fingerprint {str(corpus.get('fingerprint'))[:12]}) than --data {cfg.data} "
                          f"({info_fingerprint[:12]}); the teacher's targets would belong to other contexts")
    mine = encoding_identity(trainee.tokenizer, trainee.max_length)
    if manifest.get("encoding") != mine:
        raise KdfairError(f"--teacher-logits {path} tokenised the corpus otherwise than the student "
                          f"({manifest.get('encoding')} against {mine}: leading special tokens, EOS or "
                          "--max-length differ)")
    column = cache.column(float(cfg.temperature))
    positions = rows_for_ids(cache.sample_id, train.sample_id, have=str(path), want=f"the corpus {cfg.data}")
    if not np.array_equal(cache.lengths[positions], batches.enc.n_targets):
        bad = int(np.flatnonzero(cache.lengths[positions] != batches.enc.n_targets)[0])
        raise KdfairError(f"--teacher-logits {path}: line id {int(train.sample_id[bad])} has "
                          f"{int(cache.lengths[positions][bad])} target tokens in the cache and "
                          f"{int(batches.enc.n_targets[bad])} in the student's tokenisation (another "
                          "corpus, tokenizer or --max-length?)")

    def source(index: torch.Tensor, x: torch.Tensor) -> Callable[[int, int], TopKTargets]:
        targets, values, indices, tail = cache.gather(positions[index.cpu().numpy()])
        mine = x[:, 0, 1:][x[:, 2, 1:].bool()]
        if not torch.equal(torch.from_numpy(targets.astype(np.int64)).to(mine.device), mine):
            raise KdfairError(f"--teacher-logits {path}: its target tokens differ from the student's "
                              "tokenisation of the same lines (another corpus or tokenizer?)")
        top = TopKTargets(torch.from_numpy(values).to(device), torch.from_numpy(indices.astype(np.int64)).to(device),
                          torch.from_numpy(np.ascontiguousarray(tail[:, column])).to(device))
        return lambda start, end: TopKTargets(top.values[start:end], top.indices[start:end], top.tail_lse[start:end])

    used = np.zeros(len(cache.lengths), dtype=bool)
    used[positions] = True
    tail = cache.tail_mass(float(cfg.temperature))[np.repeat(used, cache.lengths)]
    tail_mean = float(tail.mean()) if tail.size else 0.0
    if tail_mean > TAIL_WARN:
        print(f"kdfair: warning: at T = {cfg.temperature:g} the teacher puts {tail_mean:.0%} of its probability "
              f"outside the cached top {manifest.get('top_k')} (mean over the training tokens); the bucket KL "
              "lumps it into one bucket (docs/llm.md, Top-k teacher caches): consider a larger --top-k or "
              "online distillation", file=sys.stderr)
    provenance = {"mode": "offline", "logits_cache": str(path.resolve()), "cache_sha256": cache.sha256,
                  "top_k": manifest.get("top_k"), "model": manifest.get("teacher"),
                  "tokenizer": manifest.get("tokenizer"), "tail_mass_mean": tail_mean}
    return source, provenance


def lm_objective(cfg: TrainConfig, trainee: CausalLMTrainee, batches: LMBatches, train: Split,
                 device: torch.device, fingerprint: str) -> tuple[Objective, dict]:
    """The objective for cfg.role, and the teacher's provenance (empty without a teacher)."""
    source, provenance = None, {}
    if cfg.role == "ds":
        if cfg.teacher:
            source, provenance = live_lm_teacher(cfg, trainee, device)
        elif cfg.teacher_logits:
            source, provenance = cached_lm_teacher(cfg, trainee, batches, train, device, fingerprint)
        if cfg.kd == "sequence":  # the corpus is the teacher's text; token-level KD only with a teacher
            from kdfair_cli.llm.sequence import sequence_teacher

            provenance = {**sequence_teacher(cfg.data), **({"token_level": provenance} if provenance else {})}
    temperature, alpha = cfg.temperature, cfg.alpha

    def objective(hidden: torch.Tensor, y: torch.Tensor, index: torch.Tensor, x: torch.Tensor) -> StepLoss:
        rows, targets = learned_rows(hidden, x)
        teacher = source(index, x) if source is not None else None
        loss, correct, count = chunked_token_loss(rows, trainee.head, targets, teacher, temperature, alpha,
                                                  cfg.t2_scaling, trainee.vocab, chunk=LOSS_CHUNK)
        return StepLoss(loss, correct, int(count))

    return objective, provenance


def lm_evaluator(batches: LMBatches, batch_size: int, amp: bool) -> Evaluator:
    """Validation: mean next-token cross-entropy and accuracy over the learned tokens."""

    @torch.no_grad()
    def evaluate(model: CausalLMTrainee) -> tuple[float, float]:
        was_training = model.training
        model.eval()
        loss_sum, correct, count = 0.0, 0, 0
        for _, x in batches.sequential(batch_size):
            with autocast(x.device, amp):
                rows, targets = learned_rows(model(x), x)
            loss, right, n = chunked_token_loss(rows, model.head, targets, None, None, 0.0, False, model.vocab,
                                                chunk=LOSS_CHUNK)
            loss_sum += float(loss) * int(n)
            correct += int(right)
            count += int(n)
        model.train(was_training)
        return loss_sum / max(count, 1), correct / max(count, 1)

    return evaluate
