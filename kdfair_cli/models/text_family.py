"""The text-classifier architecture family (--arch bert, distilbert, hf) as the trainer and the
loader see it (registered in kdfair_cli.models.families)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdfair_cli.models.families import ArchFamily
from kdfair_cli.models.text import ARCH_FAMILY, TEXT_ARCHS, build_text_model, load_text_model


def _build(cfg: Any, info: Any, train: Any) -> tuple[Any, dict]:
    return build_text_model(cfg.arch, info.num_classes, info.class_names, train.extra["text"],
                            pretrained=cfg.pretrained, tokenizer=cfg.tokenizer, max_length=cfg.max_length,
                            model_config=cfg.model_config, vocab_size=cfg.vocab_size)


def _save(meta: dict[str, Any], model: Any, train_b: Any, val_b: Any, facts: dict) -> Any:
    """save_pretrained output + tokenizer + model.json."""
    meta.update(arch_family=ARCH_FAMILY, text=facts)
    return model.write_dir


def _load(model_dir: Path, meta: dict) -> Any:
    return load_text_model(model_dir, meta)


FAMILY = ArchFamily(name=ARCH_FAMILY, wants_data="a text dataset (hatexplain, textcsv)",
                    wants_arch=f"a text arch ({', '.join(TEXT_ARCHS)})", build=_build, save=_save, load=_load)
