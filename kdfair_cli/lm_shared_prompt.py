"""Prompt-shared option scoring: each distinct context runs once, its options continue from its KV cache.

A BBQ item is one prompt and three options. Scoring (prompt + option) three times runs the
~100-token prompt three times; here a batch of distinct contexts is run once with `use_cache`,
the cache rows are gathered per option (`Cache.batch_select_indices`), and the options' tokens
(all but the last, which is a target only) are run behind them with position ids that continue
the prompt's. The first option token is predicted by the prompt's last position, so items whose
options are one token each need no second pass at all.

Pairs are (context ids, continuation ids) from `encode_pairs`, which already applied the
truncation rule; pairs with identical context ids share it, so an item cut differently per
option (longer than the model's positions) simply becomes separate contexts. Contexts are
ordered by length (longest first) so a batch holds contexts of similar length.

The shared path needs a plain attention KV cache (every layer a `DynamicLayer`: Llama, Qwen2,
GPT-2, Mistral without a sliding window ...). A model whose cache is anything else (sliding
window, recurrent or linear-attention layers) is scored pair by pair by `score_pairs`, which
gives the same numbers more slowly.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from kdfair_cli.models.causal_lm import CausalLM, _base_and_head, score_pairs

Pair = tuple[list[int], list[int]]


def group_pairs(pairs: list[Pair]) -> tuple[list[list[int]], list[list[int]]]:
    """(distinct contexts, indices of the pairs that continue each), first-seen order."""
    index: dict[tuple[int, ...], int] = {}
    contexts: list[list[int]] = []
    members: list[list[int]] = []
    for i, (ctx, _) in enumerate(pairs):
        key = tuple(ctx)
        g = index.get(key)
        if g is None:
            g = index[key] = len(contexts)
            contexts.append(list(ctx))
            members.append([])
        members[g].append(i)
    return contexts, members


def _plain_kv_cache(cache: Any) -> bool:
    """True when every layer of `cache` is an unbounded key/value layer that can be gathered by row."""
    from transformers.cache_utils import DynamicLayer

    cache = getattr(cache, "self_attention_cache", cache)  # an encoder-decoder wrapper (GPT-2)
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def _cache_kwarg(base: Any) -> str:
    """`cache` in transformers >= 5.25 (`past_key_values` is deprecated there), `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


@torch.no_grad()
def _score_groups(lm: CausalLM, pairs: list[Pair], contexts: list[list[int]], members: list[list[int]],
                  padding_side: str) -> tuple[np.ndarray, bool]:
    """Sum of continuation log-likelihoods per member pair (in `members` order, flattened); the bool
    is False when the model's cache cannot be shared (nothing scored then)."""
    base, head, softcap = _base_and_head(lm.model)
    dev = lm.device
    g_n = len(contexts)
    p_len = torch.tensor([len(c) for c in contexts])
    width = int(p_len.max())
    ids = torch.zeros((g_n, width), dtype=torch.long)
    mask = torch.zeros((g_n, width), dtype=torch.long)
    for g, ctx in enumerate(contexts):
        off = width - len(ctx) if padding_side == "left" else 0
        ids[g, off:off + len(ctx)] = torch.tensor(ctx)
        mask[g, off:off + len(ctx)] = 1
    last = (width - 1) * torch.ones(g_n, dtype=torch.long) if padding_side == "left" else p_len - 1
    ids, mask = ids.to(dev), mask.to(dev)
    out = base(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0),
               use_cache=True)
    cache = out.cache if getattr(out, "cache", None) is not None else getattr(out, "past_key_values", None)
    if not _plain_kv_cache(cache):
        return np.zeros(0), False
    # Positions whose output predicts a target: the prompt's last one for every option's first
    # token, then each option token but the last for the next one.
    row_of = [g for g, mem in enumerate(members) for _ in mem]
    conts = [pairs[i][1] for mem in members for i in mem]
    first_h = out.last_hidden_state[torch.arange(g_n, device=dev), last.to(dev)]
    hidden = [first_h[torch.tensor(row_of, device=dev)]]
    targets = [c[0] for c in conts]
    pair_of = list(range(len(conts)))
    o_width = max(len(c) for c in conts) - 1
    if o_width > 0:
        r = len(conts)
        o_ids = torch.zeros((r, o_width), dtype=torch.long)
        o_mask = torch.zeros((r, o_width), dtype=torch.long)
        rows, cols = [], []
        for k, c in enumerate(conts):
            n = len(c) - 1
            if n:
                o_ids[k, :n] = torch.tensor(c[:-1])
                o_mask[k, :n] = 1
                rows += [k] * n
                cols += range(n)
                targets += c[1:]
                pair_of += [k] * n
        rows_t = torch.tensor(row_of)
        cache.batch_select_indices(rows_t.to(dev))
        o_ids, o_mask = o_ids.to(dev), o_mask.to(dev)
        full_mask = torch.cat([mask[rows_t.to(dev)], o_mask], 1)
        o_pos = (p_len[rows_t][:, None] + torch.arange(o_width)[None, :]).to(dev)
        o_hidden = base(input_ids=o_ids, attention_mask=full_mask, position_ids=o_pos, use_cache=True,
                        **{_cache_kwarg(base): cache}).last_hidden_state
        hidden.append(o_hidden[torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)])
    logits = head(torch.cat(hidden)).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    logp = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(targets, device=dev)[:, None])[:, 0]
    sums = torch.zeros(len(conts), dtype=torch.float64, device=dev).index_add_(
        0, torch.tensor(pair_of, device=dev), logp.double())
    return sums.cpu().numpy(), True


def score_shared(lm: CausalLM, pairs: list[Pair], batch_size: int,
                 padding_side: str = "left") -> tuple[np.ndarray, np.ndarray]:
    """(sum of continuation log-likelihoods float64, continuation token counts) per pair, input order.

    `batch_size` counts distinct contexts per forward pass (a BBQ item's three options ride along).
    """
    if padding_side not in ("left", "right"):
        raise ValueError(padding_side)
    counts = np.asarray([len(c) for _, c in pairs], dtype=np.int64)
    sums = np.zeros(len(pairs), np.float64)
    contexts, members = group_pairs(pairs)
    order = np.argsort([-(len(ctx) + max(counts[i] for i in mem)) for ctx, mem in zip(contexts, members)],
                       kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        mem = [members[g] for g in idx]
        got, shared = _score_groups(lm, pairs, [contexts[g] for g in idx], mem, padding_side)
        if not shared:
            return score_pairs(lm, pairs, batch_size * max(1, round(len(pairs) / max(1, len(contexts)))),
                               padding_side)
        sums[[i for m in mem for i in m]] = got
    return sums, counts
