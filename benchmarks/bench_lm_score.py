"""Items per second of kdfair's batched option scorer against a plain transformers loop that
scores the same items one option at a time, run by hand (not collected by pytest).

    python benchmarks/bench_lm_score.py [--items 256] [--batch-size 16] [--family qwen2] [--device cpu]

Both score BBQ-shaped items (prompt + three options) with one tiny random causal LM built in a
temporary folder; the baseline runs model(ids).logits per (prompt, option) and sums the option's
log-probabilities. The two must agree (checked), then the ratio of items per second is printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdfair_cli.llm.bbq import open_bbq  # noqa: E402
from kdfair_cli.llm.scoring import CONTINUATION, PROMPT_TEMPLATE, build_prompts  # noqa: E402
from kdfair_cli.llm.causal_lm import encode_pairs, load_causal_lm, score_pairs  # noqa: E402
from tests.llm_fakes import tiny_lm, write_bbq  # noqa: E402


def one_by_one(model, pairs) -> np.ndarray:
    out = np.zeros(len(pairs))
    with torch.no_grad():
        for i, (p, c) in enumerate(pairs):
            ids = torch.tensor([p + c], device=model.device)
            logp = model(ids).logits[0].float().log_softmax(-1)
            out[i] = float(logp[torch.arange(len(p) - 1, len(p) - 1 + len(c)), torch.tensor(c)].sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16, help="items per forward pass (x3 sequences)")
    ap.add_argument("--family", default="qwen2", choices=("gpt2", "llama", "qwen2"))
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        per_cat = -(-args.items // 4)
        split = open_bbq(write_bbq(root / "bbq", n_per_category=per_cat)).split("test")
        lm = load_causal_lm(tiny_lm(root / "lm", args.family, hidden=args.hidden), torch.device(args.device))
        prompts, options = build_prompts(split.attrs, PROMPT_TEMPLATE)
        n = min(args.items, len(prompts))
        pairs = encode_pairs(lm, [prompts[i] for i in range(n) for _ in range(3)],
                             [CONTINUATION.format(option=o) for i in range(n) for o in options[i]])
        score_pairs(lm, pairs[:48], args.batch_size * 3)  # warm-up
        one_by_one(lm.model, pairs[:6])
        t_batch, t_loop = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            batched, _ = score_pairs(lm, pairs, args.batch_size * 3)
            t_batch.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            loop = one_by_one(lm.model, pairs)
            t_loop.append(time.perf_counter() - t0)
        diff = float(np.abs(batched - loop).max())
        assert diff < 1e-3, diff
        rb, rl = n / np.array(t_batch), n / np.array(t_loop)
        ratio = rb / rl
        print(f"{args.family} hidden {args.hidden}, {n} items x 3 options, device {args.device}, "
              f"{torch.get_num_threads()} threads; max |batched - loop| = {diff:.2e}")
        print(f"batched (batch {args.batch_size} items): {rb.mean():.1f} ± {rb.std(ddof=1):.1f} items/s")
        print(f"one by one (plain transformers loop): {rl.mean():.1f} ± {rl.std(ddof=1):.1f} items/s")
        print(f"speed-up: {ratio.mean():.2f}x ± {ratio.std(ddof=1):.2f} over {args.repeats} repeats")


if __name__ == "__main__":
    main()
