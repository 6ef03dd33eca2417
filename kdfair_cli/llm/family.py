"""The causal-LM architecture family (--arch causal-lm) as the trainer and predict see it
(registered in kdfair_cli.models.families)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdfair_cli.llm.causal_lm import ARCH_FAMILY, check_local_dir, is_causal_lm_dir
from kdfair_cli.llm.trainee import build_trainee
from kdfair_cli.models.families import ArchFamily


def _build(cfg: Any, info: Any, train: Any) -> tuple[Any, dict]:
    return build_trainee(cfg.pretrained, cfg.tokenizer, cfg.max_length, lora_rank=cfg.lora_rank,
                         lora_alpha=cfg.lora_alpha, grad_checkpointing=cfg.grad_checkpointing)


def _objective(cfg: Any, model: Any, train_b: Any, val_b: Any, train: Any, device: Any,
               fingerprint: str) -> tuple[Any, dict, Any]:
    """Next-token cross-entropy, or token-level KD (kdfair_cli.llm.teacher)."""
    from kdfair_cli.llm.teacher import lm_evaluator, lm_objective

    objective, provenance = lm_objective(cfg, model, train_b, train, device, fingerprint)
    return objective, provenance, lm_evaluator(val_b, cfg.batch_size, cfg.amp)


def _save(meta: dict[str, Any], model: Any, train_b: Any, val_b: Any, facts: dict) -> Any:
    """save_pretrained output + tokenizer + model.json; accuracy is per learned token."""
    from kdfair_cli.llm.teacher import LOSS_CHUNK

    meta.update(arch_family=ARCH_FAMILY, pretrained=None,
                lm={**facts, "train_tokens": int(train_b.enc.n_targets.sum()),
                    "val_tokens": int(val_b.enc.n_targets.sum()), "loss_chunk": LOSS_CHUNK})
    meta["selection"]["metric"] = "val_acc (next-token accuracy on the learned tokens)"
    return model.write_dir


def _predictor(model_dir: Path) -> Any:
    """Scoring of multiple-choice items (kdfair_cli.llm.scoring) for a causal-LM directory."""
    check_local_dir(model_dir)
    if not is_causal_lm_dir(model_dir):
        return None
    from kdfair_cli.llm.scoring import predict_causal_lm

    def predict(model_dir: Path, *, batch_size: int | None = None, lm_options: dict | None = None,
                **options: Any) -> Any:
        return predict_causal_lm(model_dir, batch_size=batch_size or 16, **options, **(lm_options or {}))

    return predict


FAMILY = ArchFamily(name=ARCH_FAMILY, wants_data="--dataset corpus", wants_arch="--arch causal-lm",
                    build=_build, save=_save, objective=_objective, predictor=_predictor,
                    supports=frozenset({"lora_rank", "lora_alpha", "grad_checkpointing", "fsdp", "kd_sequence"}),
                    shard_units=lambda model: model.blocks())
