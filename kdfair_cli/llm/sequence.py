"""Sequence-level distillation: the student is fine-tuned on text its teacher generated.

The corpus is `kdfair generate TEACHER --dataset corpus --temperature T --samples K -o FILE`
output; FILE.provenance.json (written with it) names the teacher (folder, config and tokenizer
hashes, weights sha256) and the sampling (T, top-p, seed, K). `distill --kd sequence` reads it,
checks that the corpus is the one it describes (sha256), and records it as the model's teacher:
model.json's `teacher.sampling_temperature` is T. This module imports no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import register_input
from kdfair_cli.io.modeldir import sha256_file

SIDECAR_SUFFIX = ".provenance.json"
KIND = "kdfair.generated-corpus/1"


def corpus_file(data: str | Path) -> Path:
    """The corpus's training file: DATA itself, or DATA/train.jsonl."""
    path = Path(data)
    return path / "train.jsonl" if path.is_dir() else path


def sequence_teacher(data: str | Path) -> dict[str, Any]:
    """model.json's `teacher` of a student trained on a generated corpus (KdfairError if the
    sidecar is missing, not one, or describes another file)."""
    corpus = corpus_file(data)
    side = Path(f"{corpus}{SIDECAR_SUFFIX}")
    if not side.is_file():
        raise KdfairError(f"--kd sequence: {side} is missing; the corpus must come from `kdfair generate "
                          "TEACHER --dataset corpus`, which writes it beside the corpus")
    register_input(side)
    try:
        prov = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise KdfairError(f"{side}: not a provenance file ({exc})") from None
    if not isinstance(prov, dict) or prov.get("kind") != KIND:
        raise KdfairError(f"{side}: not a provenance file of `kdfair generate` (kind {KIND})")
    digest = sha256_file(corpus)
    if prov.get("corpus_sha256") != digest:
        raise KdfairError(f"{corpus} is not the corpus {side} describes (sha256 differs): it was changed "
                          "after generation")
    return {"mode": "sequence", **prov["teacher"], "sampling_temperature": prov["sampling_temperature"],
            "top_p": prov["top_p"], "seed": prov["seed"], "samples": prov["samples"],
            "max_new_tokens": prov.get("max_new_tokens"), "corpus": str(corpus.resolve()),
            "corpus_sha256": digest}
