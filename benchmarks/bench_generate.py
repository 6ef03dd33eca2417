"""Prompts per second of kdfair's batched, left-padded HF generation against a one-by-one loop
over the same prompts, in one run (not collected by pytest).

    python benchmarks/bench_generate.py [--items 64] [--batch-size 16] [--max-new-tokens 32] [--device cpu]

Both generate greedily from one tiny random causal LM (built in a temporary folder) on
BBQ-shaped prompts through the chat template-free path of `kdfair generate`; greedy decoding
makes the texts comparable: the share of identical texts is printed (left padding may change
float rounding, so a few can differ). Then both rates and their ratio (target >= 3x on CPU).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdfair_cli.llm.bbq import open_bbq  # noqa: E402
from kdfair_cli.llm.causal_lm import load_causal_lm  # noqa: E402
from kdfair_cli.llm.generate import GENERATION_TEMPLATE, HFEngine, Sampling, chat_prompts  # noqa: E402
from kdfair_cli.llm.scoring import TEMPLATE_FIELDS  # noqa: E402
from tests.llm_fakes import tiny_lm, write_bbq  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        split = open_bbq(write_bbq(root / "bbq", n_per_category=-(-args.items // 4))).split("test")
        lm = load_causal_lm(tiny_lm(root / "lm", "llama", hidden=args.hidden), torch.device(args.device))
        texts = [GENERATION_TEMPLATE.format(**{f: str(split.attrs[f][i]) for f in TEMPLATE_FIELDS})
                 for i in range(min(args.items, len(split.labels)))]
        ids, _ = chat_prompts(lm.tokenizer, texts, False)
        sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=0.0)
        batched, single = HFEngine(lm, args.batch_size), HFEngine(lm, 1)
        batched.generate(ids[:4], sampling)  # warm-up
        t0 = time.perf_counter()
        out_b = batched.generate(ids, sampling)[0]
        t_b = time.perf_counter() - t0
        t0 = time.perf_counter()
        out_1 = single.generate(ids, sampling)[0]
        t_1 = time.perf_counter() - t0
        same = sum(a.text == b.text for a, b in zip(out_b, out_1)) / len(ids)
        n = len(ids)
        print(f"{n} prompts, {args.max_new_tokens} new tokens each, {args.device}, "
              f"{torch.get_num_threads()} thread(s)")
        print(f"batched (batch {args.batch_size}, left-padded): {n / t_b:8.2f} prompts/s ({t_b:.2f}s)")
        print(f"one by one:                      {n / t_1:8.2f} prompts/s ({t_1:.2f}s)")
        print(f"ratio batched / one-by-one: {t_1 / t_b:.2f}x; identical greedy texts: {same:.0%}")


if __name__ == "__main__":
    main()
