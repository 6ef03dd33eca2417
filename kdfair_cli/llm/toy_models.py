"""The tokenizer and the tiny causal LMs of `kdfair data llm-toy`, made locally, never downloaded.

The tokenizer is word-level (the `tokenizers` library's WordLevel model, trained on the toy text)
with `<s>` (put before every text, as Llama's BOS), `</s>`, `<pad>` and `<unk>`; a word-level
vocabulary gives every answer its own first token, so "grandfather" and "grandson" differ at the
first scored position. It is saved as a transformers PreTrainedTokenizerFast, so AutoTokenizer
loads it from the folder. The models are transformers Llama causal LMs initialised from a fixed
torch seed: the same seed gives the same weights, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPECIAL = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


@dataclass(frozen=True)
class ToyModel:
    """Size of one tiny Llama (hidden width, layers, attention heads)."""

    hidden: int
    layers: int
    heads: int


#: The teacher is larger than the student, as in distillation; both fit a 2-core CPU.
TEACHER = ToyModel(hidden=96, layers=3, heads=4)
STUDENT = ToyModel(hidden=48, layers=2, heads=4)
MAX_POSITIONS = 128


def train_tokenizer(texts: Iterable[str]) -> Any:
    """A word-level PreTrainedTokenizerFast over every word of `texts` (specials first)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token=SPECIAL["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    specials = [SPECIAL[k] for k in ("unk_token", "bos_token", "eos_token", "pad_token")]
    tok.train_from_iterator(list(texts), trainer=trainers.WordLevelTrainer(special_tokens=specials,
                                                                            show_progress=False))
    bos = SPECIAL["bos_token"]
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[(bos, tok.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)


def save_model(folder: Path, size: ToyModel, tokenizer: Any, seed: int) -> dict[str, Any]:
    """A randomly initialised Llama of `size` with `tokenizer`, saved in `folder`; its summary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" would print on stderr

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden, intermediate_size=2 * size.hidden,
        num_hidden_layers=size.layers, num_attention_heads=size.heads, num_key_value_heads=size.heads,
        max_position_embeddings=MAX_POSITIONS, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"family": "llama", "hidden": size.hidden, "layers": size.layers, "heads": size.heads,
            "parameters": int(sum(p.numel() for p in model.parameters())), "seed": seed}
