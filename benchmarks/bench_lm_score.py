"""kdfair's BBQ option scorer against lm-evaluation-harness's HFLM on the same model and the same
(context, continuation) pairs, in one run (not collected by pytest).

    pip install -e '.[bench]'        # lm-eval, the optional `bench` extra
    python benchmarks/bench_lm_score.py [--items 1800] [--hidden 256] [--layers 4] [--device cpu]

Both score real-text BBQ items in the published layout (tests/llm_fakes.write_bbq: ~40-60-token
prompts, options of 1-5 tokens) with one randomly initialised Llama built in a temporary folder
with a byte-level BPE tokenizer (nothing is downloaded; lm-eval loads it with `pretrained=DIR`).
Each side starts from the strings: kdfair runs encode_pairs + score_shared (each prompt once,
its options packed behind it), lm-eval runs HFLM.loglikelihood on Instances (its own
tokenisation, length-sorted batches, one-token continuation sharing) at each --lm-eval-batch-sizes.
Also timed: kdfair's pair-by-pair scorer (score_pairs, no sharing), for reference.

Printed: items/s of each (mean ± sd over --repeats), kdfair / lm-eval's best, token pairs that
encode identically, answer agreement (argmax per item, items tied within 1e-6 in either set left
aside) and max |log-likelihood difference|. Threads default to 1 (the machine may be shared).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdfair_cli.llm.bbq import open_bbq  # noqa: E402
from kdfair_cli.llm.scoring import CONTINUATION, PROMPT_TEMPLATE, build_prompts  # noqa: E402
from kdfair_cli.llm.shared_prompt import score_shared  # noqa: E402
from kdfair_cli.llm.causal_lm import encode_pairs, load_causal_lm, score_pairs  # noqa: E402
from tests.llm_fakes import tiny_lm, write_bbq  # noqa: E402

TIE = 1e-6


def answers(ll: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(argmax per item, True where the top two are tied within TIE)."""
    top2 = np.sort(ll, 1)[:, -2:]
    return ll.argmax(1), (top2[:, 1] - top2[:, 0]) < TIE


def bbq_strings(folder: Path, n: int) -> tuple[list[str], list[str]]:
    """(context, continuation) strings of n fixture BBQ items, three pairs per item."""
    split = open_bbq(write_bbq(folder, n_per_category=-(-n // 4))).split("test")
    prompts, options = build_prompts(split.attrs, PROMPT_TEMPLATE)
    n = min(n, len(prompts))
    return ([prompts[i] for i in range(n) for _ in range(3)],
            [CONTINUATION.format(option=o) for i in range(n) for o in options[i]])


def kdfair_loglik(lm, ctx: list[str], cont: list[str], batch_size: int) -> np.ndarray:
    """kdfair from strings: encode_pairs, then each prompt once (score_shared)."""
    return score_shared(lm, encode_pairs(lm, ctx, cont), batch_size)[0]


def make_hflm(pretrained, batch_size: int, device: str, max_length: int, tokenizer=None):
    """lm-eval's HFLM on a local folder (`pretrained=DIR`) or an already built model; float32 log-softmax."""
    from lm_eval.models.huggingface import HFLM

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    kw = {"tokenizer": tokenizer} if tokenizer is not None else {"device": device, "dtype": "float32"}
    return HFLM(pretrained=pretrained, backend="causal", batch_size=batch_size, max_length=max_length,
                softmax_dtype="float32", **kw)


def lm_eval_loglik(hf, ctx: list[str], cont: list[str]) -> np.ndarray:
    """lm-eval from strings: Instances through HFLM.loglikelihood (its tokenisation and batching)."""
    from lm_eval.api.instance import Instance

    instances = [Instance("loglikelihood", {}, (c, o), k) for k, (c, o) in enumerate(zip(ctx, cont))]
    return np.array([r[0] for r in hf.loglikelihood(instances, disable_tqdm=True)])


def rate(n: int, times: list[float]) -> tuple[float, float]:
    r = n / np.asarray(times)
    return float(r.mean()), float(r.std(ddof=1)) if len(r) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1800)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16, help="kdfair: items (prompts) per forward pass")
    ap.add_argument("--lm-eval-batch-sizes", default="16,48", help="lm-eval: requests per forward pass")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        sys.exit("bench_lm_score.py needs lm-eval: pip install -e '.[bench]'")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ctx, cont = bbq_strings(root / "bbq", args.items)
        n = len(ctx) // 3
        model_dir = tiny_lm(root / "lm", "llama", hidden=args.hidden, layers=args.layers)
        lm = load_causal_lm(model_dir, torch.device(args.device))

        def kdfair_pairs() -> np.ndarray:
            return score_pairs(lm, encode_pairs(lm, ctx, cont), args.batch_size * 3)[0]

        runs: dict[str, tuple] = {
            "kdfair (prompt shared)": (lambda: kdfair_loglik(lm, ctx, cont, args.batch_size), f"{args.batch_size} items"),
            "kdfair (pair by pair)": (kdfair_pairs, f"{args.batch_size * 3} pairs")}
        hflms = {}
        for bs in (int(b) for b in args.lm_eval_batch_sizes.split(",")):
            hflms[bs] = hf = make_hflm(str(model_dir), bs, args.device, lm.max_length)
            runs[f"lm-eval {bs}"] = (lambda hf=hf: lm_eval_loglik(hf, ctx, cont), f"{bs} requests")
        # Identical token pairs? (lm-eval encodes context + continuation whole and splits.)
        hf0 = next(iter(hflms.values()))
        ours = encode_pairs(lm, ctx, cont)
        same_tokens = sum(list(p) == hf0._encode_pair(c, o)[0] and list(q) == hf0._encode_pair(c, o)[1]
                          for (p, q), c, o in zip(ours, ctx, cont))
        results, times = {}, {}
        for name, (fn, _) in runs.items():  # warm-up
            fn()
        for _ in range(args.repeats):
            for name, (fn, _) in runs.items():
                t0 = time.perf_counter()
                results[name] = fn()
                times.setdefault(name, []).append(time.perf_counter() - t0)
        ref = results["kdfair (prompt shared)"].reshape(-1, 3)
        print(f"Llama {args.layers}x{args.hidden}, vocab {len(lm.tokenizer)}, "
              f"{lm.provenance['parameters'] / 1e6:.2f}M parameters; {n} BBQ items x 3 options; device "
              f"{args.device}, {torch.get_num_threads()} torch thread(s); {args.repeats} repeats after a warm-up")
        print(f"token pairs identical to lm-eval's encoding: {same_tokens}/{len(ours)}")
        mean_p = np.mean([len(p) for p, _ in ours[::3]])
        mean_c = np.mean([len(c) for _, c in ours])
        print(f"mean prompt {mean_p:.1f} tokens, mean option {mean_c:.2f} tokens")
        print(f"{'scorer':<24}{'batch':>14}{'items/s':>18}{'max|dlogL|':>12}{'answers equal':>15}")
        a_ref, tie_ref = answers(ref)
        for name, (_, batch) in runs.items():
            m, s = rate(n, times[name])
            ll = results[name].reshape(-1, 3)
            a, tie = answers(ll)
            keep = ~(tie | tie_ref)
            agree = float((a[keep] == a_ref[keep]).mean()) if keep.any() else 1.0
            print(f"{name:<24}{batch:>14}{m:>11.1f} ± {s:<5.1f}{np.abs(ll - ref).max():>12.2e}"
                  f"{100 * agree:>11.2f}% ({int((~keep).sum())} tied)")
        best_name = max((k for k in runs if k.startswith("lm-eval")), key=lambda k: rate(n, times[k])[0])
        ratio = (n / np.asarray(times["kdfair (prompt shared)"])) / (n / np.asarray(times[best_name]))
        print(f"kdfair (prompt shared) / {best_name} (lm-eval's best): {ratio.mean():.2f}x"
              f" ± {ratio.std(ddof=1) if len(ratio) > 1 else 0.0:.2f}")


if __name__ == "__main__":
    main()
