"""Text classifiers through transformers: BERT / DistilBERT from a config, or a local model dir.

The training loop, the KD loss and predict call `model(x)` with one tensor. For text that tensor
is the stacked token ids and attention mask, int64 [B, 2, L]; HFTextClassifier unpacks it and
returns the sequence-classification logits. The model carries its tokenizer: `make_batches`
tokenises a split once (truncated / padded to max_length, held in memory on the device) and
each batch is trimmed to its longest post. Text has no augmentation (--augment is ignored).

Where models come from (never the Hugging Face hub: every load is local_files_only, and
HF_HUB_OFFLINE defaults to 1 in this process):
- `--arch bert` / `--arch distilbert`: a new model from a config, BERT-Base (768 hidden,
  12 layers, 12 heads, FFN 3072) / DistilBERT-Base (768, 6 layers, 12 heads, 3072) unless
  `--model-config` overrides (aliases hidden, layers, heads, ffn, or raw config keys).
  Tokenizer: `--tokenizer DIR` (any local tokenizer, e.g. a teacher's model dir), else a
  WordPiece tokenizer trained on the training split's text with the tokenizers library
  (lower-cased BERT normalisation, `--vocab-size`, deterministic) and saved in the model dir.
- `--pretrained DIR` (`--arch hf`, or bert/distilbert to check the model type): a local
  AutoModelForSequenceClassification checkpoint and its tokenizer (or `--tokenizer DIR`); the
  classification head is re-initialised when its class count differs.
The model directory holds save_pretrained output (config.json, model.safetensors), the tokenizer
files and model.json with arch_family "hf".
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdfair_cli.data.batches import IndexedBatches
from kdfair_cli.errors import KdfairError
from kdfair_cli.io.atomic import umask_modes

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEXT_ARCHS = ("bert", "distilbert", "hf")
ARCH_FAMILY = "hf"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

#: arch -> (model_type, base config, alias -> config key)
PRESETS: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
    "bert": ("bert", {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                      "intermediate_size": 3072},
             {"hidden": "hidden_size", "layers": "num_hidden_layers", "heads": "num_attention_heads",
              "ffn": "intermediate_size"}),
    "distilbert": ("distilbert", {"dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072},
                   {"hidden": "dim", "layers": "n_layers", "heads": "n_heads", "ffn": "hidden_dim"}),
}


def is_text_arch(arch: str) -> bool:
    return arch in TEXT_ARCHS


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class TokenBatches(IndexedBatches):
    """Batches of token ids [B, 2, L] (ids, attention mask) from a tokenised split on the device."""

    def __init__(self, tokens: torch.Tensor) -> None:
        self.tokens = tokens
        self.device = tokens.device

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def get(self, index: torch.Tensor) -> torch.Tensor:
        batch = self.tokens[index]
        length = max(1, int(batch[:, 1].sum(1).max()))
        return batch[:, :, :length]


class HFTextClassifier(nn.Module):
    """A transformers sequence classifier taking x = stack(input_ids, attention_mask) [B, 2, L]."""

    def __init__(self, hf_model: nn.Module, tokenizer: Any, max_length: int) -> None:
        super().__init__()
        self.hf = hf_model
        self.tokenizer = tokenizer
        self.max_length = int(max_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=x[:, 0], attention_mask=x[:, 1]).logits

    def encode(self, texts: Any, chunk: int = 4096) -> torch.Tensor:
        """Token ids and attention masks, int64 [N, 2, max_length], truncated and padded."""
        texts = [str(t) for t in texts]
        parts = []
        for s in range(0, len(texts), chunk):
            enc = self.tokenizer(texts[s:s + chunk], truncation=True, max_length=self.max_length,
                                 padding="max_length", return_tensors="pt")
            parts.append(torch.stack([enc["input_ids"], enc["attention_mask"]], 1).long())
        if not parts:
            return torch.zeros((0, 2, self.max_length), dtype=torch.long)
        return torch.cat(parts)

    def make_batches(self, split: Any, device: torch.device) -> TokenBatches:
        if split.extra.get("text") is None:
            raise KdfairError(f"split '{split.name}' has no text: text models need a text dataset "
                              "(hatexplain, textcsv)")
        return TokenBatches(self.encode(split.extra["text"]).to(device))

    def write_dir(self, out: Path, state_dict: dict | None = None) -> None:
        """save_pretrained of model and tokenizer into `out` (files swapped in one by one)."""
        if state_dict is not None:
            self.load_state_dict(state_dict)
        write_pretrained(out, self.hf, self.tokenizer)


def write_pretrained(out: Path, hf: nn.Module, tokenizer: Any) -> None:
    """save_pretrained of a model (one model.safetensors) and its tokenizer into `out`, written in a
    temporary folder and swapped in file by file, with the umask's file modes."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".hf-", dir=out))
    try:
        hf.save_pretrained(tmp, safe_serialization=True, max_shard_size="1000GB")
        tokenizer.save_pretrained(tmp)
        umask_modes(tmp)  # save_pretrained writes its safetensors 0600, unlike every other output
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train_wordpiece(texts: Any, vocab_size: int) -> Any:
    """A lower-cased BERT-style WordPiece tokenizer trained on `texts` (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                        show_progress=False)
    tok.train_from_iterator([str(t) for t in texts], trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise KdfairError(f"tokenizer directory {path} does not exist")
    _quiet_transformers()
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise KdfairError(f"{path}: no loadable tokenizer ({str(exc).splitlines()[0]})") from exc
    if tok.pad_token_id is None:
        raise KdfairError(f"tokenizer in {path} has no padding token")
    return tok


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_model_config(spec: str | None, arch: str) -> dict[str, Any]:
    """`--model-config "hidden=32,layers=2,heads=2,ffn=64"` -> config keys of `arch`'s family."""
    if not spec:
        return {}
    aliases = PRESETS[arch][2] if arch in PRESETS else {}
    out: dict[str, Any] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise KdfairError(f"--model-config item {item!r}: expected key=value")
        key, value = (s.strip() for s in item.split("=", 1))
        out[aliases.get(key, key)] = _parse_value(value)
    return out


def build_text_model(arch: str, num_classes: int, class_names: tuple[str, ...], train_texts: Any, *,
                     pretrained: str | None = None, tokenizer: str | None = None, max_length: int = 128,
                     model_config: str | None = None, vocab_size: int = 8000) -> tuple[HFTextClassifier, dict]:
    """A new (or local pretrained) text classifier and the facts model.json records about it."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    _quiet_transformers()
    if not is_text_arch(arch):
        raise KdfairError(f"arch '{arch}' is not a text model; expected one of {', '.join(TEXT_ARCHS)}")
    if max_length < 8:
        raise KdfairError(f"--max-length must be at least 8, got {max_length}")
    labels = {"id2label": dict(enumerate(class_names)), "label2id": {n: i for i, n in enumerate(class_names)}}
    overrides = parse_model_config(model_config, arch)
    meta: dict[str, Any] = {"max_length": max_length, "pretrained": None, "tokenizer_source": None}
    if pretrained:
        pdir = Path(pretrained)
        if not (pdir / "config.json").exists():
            raise KdfairError(f"--pretrained {pdir}: no config.json (a local save_pretrained directory "
                              "is expected; the hub is never contacted)")
        config = AutoConfig.from_pretrained(str(pdir), local_files_only=True, num_labels=num_classes,
                                            **labels, **overrides)
        if arch in PRESETS and config.model_type != PRESETS[arch][0]:
            raise KdfairError(f"--pretrained {pdir} is a '{config.model_type}' model, not '{arch}' "
                              "(use --arch hf to take any model type)")
        tok = load_tokenizer(tokenizer or pdir)
        try:
            hf = AutoModelForSequenceClassification.from_pretrained(
                str(pdir), config=config, local_files_only=True, ignore_mismatched_sizes=True)
        except (OSError, ValueError) as exc:
            raise KdfairError(f"--pretrained {pdir}: cannot load ({str(exc).splitlines()[0]})") from exc
        meta.update(pretrained=str(pdir.resolve()), tokenizer_source=str(Path(tokenizer or pdir).resolve()))
    else:
        if arch == "hf":
            raise KdfairError("--arch hf needs --pretrained DIR (or use --arch bert|distilbert)")
        if tokenizer:
            tok = load_tokenizer(tokenizer)
            meta["tokenizer_source"] = str(Path(tokenizer).resolve())
        else:
            if vocab_size < len(SPECIAL_TOKENS) + 10:
                raise KdfairError(f"--vocab-size must be at least {len(SPECIAL_TOKENS) + 10}, got {vocab_size}")
            tok = train_wordpiece(train_texts, vocab_size)
            meta["tokenizer_source"] = f"wordpiece trained on the train split (vocab_size {vocab_size})"
        model_type, base, _ = PRESETS[arch]
        params = {**base, "max_position_embeddings": max(512, max_length), **overrides}
        try:
            config = AutoConfig.for_model(model_type, vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                          num_labels=num_classes, **labels, **params)
            hf = AutoModelForSequenceClassification.from_config(config)
        except (ValueError, TypeError) as exc:
            raise KdfairError(f"--arch {arch} --model-config: {exc}") from exc
    if len(tok) > hf.config.vocab_size:
        raise KdfairError(f"tokenizer has {len(tok)} tokens, the model's vocabulary only {hf.config.vocab_size}")
    meta.update(model_type=hf.config.model_type, vocab_size=int(hf.config.vocab_size))
    return HFTextClassifier(hf, tok, max_length), meta


def load_text_model(model_dir: str | Path, meta: dict) -> HFTextClassifier:
    """The classifier saved in a kdfair text model directory (save_pretrained + tokenizer)."""
    from transformers import AutoModelForSequenceClassification

    _quiet_transformers()
    model_dir = Path(model_dir)
    try:
        hf = AutoModelForSequenceClassification.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise KdfairError(f"{model_dir}: cannot load the transformers model ({str(exc).splitlines()[0]})") from exc
    text = meta.get("text") or {}
    return HFTextClassifier(hf, load_tokenizer(model_dir), int(text.get("max_length", 128)))
