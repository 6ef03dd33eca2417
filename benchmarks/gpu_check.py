"""The GPU check: every GPU path of kdfair in one prepared run, one table, one JSON file.

    python benchmarks/gpu_check.py                      # CUDA if present, about 8 minutes
    python benchmarks/gpu_check.py --device cpu --quick # CI: the same logic in under 2 minutes

Sections, in order; each is guarded (a failure is recorded and the next section runs), checked
against the time budget before it starts and cut off by an alarm when it overruns; the JSON is
rewritten after every section, so a run killed half-way still leaves its partial results.
Status per section: ok, failed (an error: exit code 1), timeout (ran past the budget: exit code
0, the figures are missing), skipped (with the reason).

1. env      torch/timm versions, device, bf16 support, nccl, torch.compile.
2. data     Trifeature generated at 224 px (the original set's resolution), 8 images per
            combination for train as in the default study (--quick: 16 px, 1 per combination).
3. teacher  train-teacher ResNet-20 with bf16 autocast, --channels-last and --compile (CUDA;
            on CPU kdfair uses neither autocast nor channels_last, and --compile is skipped in
            --quick mode: the inductor C++ build takes minutes). Peak GPU memory.
4. bare     the same model and batch in a bare PyTorch loop (uint8 images on the device,
            normalised, no augmentation, same autocast/channels_last/compile): kdfair's
            steady-state training throughput (epochs after the first, no validation) over the
            bare loop's.
5. predict  the teacher's logits on train (the offline cache) and test; images/s.
6. distill  LeNet-5 students at T = 4, offline (cached logits) and online (live teacher): the
            online/offline epoch-time ratio, peak memory.
7. torchrun train-teacher under `torchrun --nproc_per_node 1` (DDP path, nccl on CUDA, gloo on
            CPU) against the same run without torchrun: the largest weight difference.
8. llm score  BBQ option scoring (3 options per item) of a randomly initialised Llama built from a
            config, nothing downloaded (CUDA: DeepSeek-R1-Distill-Qwen-1.5B's shape, bf16, 2,048
            items; CPU: Qwen2-0.5B's shape, 64 items; --quick: a 2x64 toy, 32 items): kdfair's
            items/s and tokens/s, and lm-eval's HFLM on the same model and pairs at two batch sizes
            when lm-eval is installed (the `bench` extra), with the ratio and their agreement.
9. llm distill  token-level distillation of a config-built Llama (~0.55B) from a ~1.4B Llama
            teacher (random weights, a 32,000-word vocabulary, nothing downloaded), bf16 autocast
            and activation checkpointing: learned tokens/s offline (top-64 cache) and online, peak
            memory (--quick or CPU: toy sizes).
10. generation  `kdfair generate`'s engines on a random Qwen2-shaped model: HF batched generate
            prompts/s, and vLLM's on the same token ids (with its ratio) when vLLM is installed.
11. paper   with the time left: the paper's Trifeature regime (examples/trifeature.toml's
            recipe: ResNet-20 teacher 30 epochs, LeNet-5 NDS and DS 6 epochs; --quick: 1 epoch)
            on that data, T = 1, 5, 10, one seed after another while the next one fits (a
            sweep, so finished cells are kept); its report table.

The table goes to stdout; the JSON (default gpu_check-<device>.json) holds every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402


class SectionTimeout(Exception):
    """A section ran past the time it was given."""


class Skip(Exception):
    """A section that cannot run here; the message says why."""


class Check:
    """Runs the sections against one deadline, keeps their results and writes the JSON."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.budget
        self.results: dict[str, Any] = {"device": args.device, "quick": args.quick, "budget_s": args.budget,
                                        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sections": {}}
        self.rows: list[tuple[str, str, str]] = []
        #: Which machine gave a section's figures (a table column, and each section's "device").
        self.device_label = (torch.cuda.get_device_name(0) if args.device == "cuda"
                             else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def section(self, name: str, fn: Callable[[], dict[str, Any]], *, needs_s: float, summary: Callable) -> None:
        """Run fn() if `needs_s` seconds are left; record ok / failed / skipped and a table row."""
        record: dict[str, Any] = {}
        start = time.monotonic()
        if self.left() < needs_s:
            record = {"status": "skipped", "reason": f"out of time ({self.left():.0f}s left, needs ~{needs_s:.0f}s)"}
        else:
            alarm: dict[str, bool] = {}
            try:
                with _alarm(max(1, int(self.left())), alarm):
                    record = {"status": "ok", **fn()}
            except Skip as exc:
                record = {"status": "skipped", "reason": str(exc)}
            except SectionTimeout:
                record = {"status": "timeout", "error": "ran past the time budget"}
            except BaseException as exc:  # noqa: BLE001 - one section's failure must not stop the check
                if isinstance(exc, KeyboardInterrupt):
                    raise
                error = f"{type(exc).__name__}: {str(exc).strip()[:800]}"
                record = {"status": "failed", "error": error}
                if alarm.get("fired"):  # kdfair turned the alarm into its own exit code
                    record = {"status": "timeout", "error": f"ran past the time budget ({error})"}
        record["seconds"] = round(time.monotonic() - start, 2)
        record["device"] = self.device_label
        self.results["sections"][name] = record
        if record["status"] == "ok":
            text = summary(record)
        else:
            text = f"{record['status']}: {record.get('reason') or record.get('error')}"
        self.rows.append((name, record["status"], text))
        self.write()
        print(f"[{time.monotonic() - self.t0:6.0f}s] {name}: {text}", file=sys.stderr, flush=True)

    def write(self) -> None:
        self.results["elapsed_s"] = round(time.monotonic() - self.t0, 2)
        self.results["table"] = [{"section": n, "status": s, "device": self.device_label, "result": t}
                                 for n, s, t in self.rows]
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(self.results, indent=2, default=str) + "\n")
        tmp.replace(out)

    def table(self) -> str:
        width = max(len(n) for n, _, _ in self.rows)
        dev = self.device_label
        lines = [f"| {'section':<{width}} | status  | device | result |",
                 f"|{'-' * (width + 2)}|---------|--------|--------|"]
        lines += [f"| {n:<{width}} | {s:<7} | {dev} | {t} |" for n, s, t in self.rows]
        return "\n".join(lines)


@contextlib.contextmanager
def _alarm(seconds: int, state: dict[str, bool]) -> Iterator[None]:
    def fire(signum, frame):  # noqa: ARG001
        state["fired"] = True
        raise SectionTimeout()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------------- helpers

def kdfair(*args: Any) -> None:
    """Run a kdfair command in this process (so GPU memory is measurable); raise on failure.

    Its stdout (e.g. the report's table) goes to stderr: the check's stdout is its own table only.
    """
    import typer.main

    from kdfair_cli.cli.app import app

    argv = [str(a) for a in args]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            code = typer.main.get_command(app).main(args=argv, prog_name="kdfair", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code
    if code not in (0, None):
        raise RuntimeError(f"kdfair {' '.join(argv[:1])} exited with {code}")


def kdfair_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep + path if path else ''}"}


@contextlib.contextmanager
def peak_memory(device: str) -> Iterator[dict[str, Any]]:
    """Peak GPU memory allocated inside the block (CUDA), else the process's peak RSS so far."""
    out: dict[str, Any] = {}
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    yield out
    if device == "cuda":
        torch.cuda.synchronize()
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def memory_text(rec: dict) -> str:
    if "peak_gpu_mib" in rec:
        return f"peak GPU {rec['peak_gpu_mib']:.0f} MiB"
    return f"peak RSS {rec.get('peak_rss_mib', float('nan')):.0f} MiB (CPU)"


def steady_rate(model_dir: Path, n_train: int) -> float:
    """Training images/s over the epochs after the first (no compile warm-up, no validation)."""
    import pandas as pd

    seconds = pd.read_parquet(model_dir / "history.parquet")["seconds"].tolist()
    steady = seconds[1:] or seconds
    return n_train * len(steady) / sum(steady)


def gpu_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--device", args.device, "--amp", "--channels-last"]
    if args.compile:
        flags.append("--compile")
    return flags


# ------------------------------------------------------------------------------------- sections

def env_section(args: argparse.Namespace) -> dict[str, Any]:
    import torch.distributed as dist

    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                            "cuda_available": torch.cuda.is_available(), "cpus": os.cpu_count(),
                            "nccl_available": dist.is_available() and dist.is_nccl_available(),
                            "gloo_available": dist.is_available() and dist.is_gloo_available(),
                            "compile": args.compile}
    try:
        import timm

        info["timm"] = timm.__version__
    except ImportError:
        info["timm"] = None
    if args.device == "cuda":
        info.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                    bf16_supported=torch.cuda.is_bf16_supported(),
                    gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
        info["bf16_autocast"] = "on" if info["bf16_supported"] else "skipped: GPU has no bf16"
    else:
        info["bf16_autocast"] = "skipped: CPU (kdfair autocasts on CUDA only)"
        info["channels_last"] = "skipped: CPU (kdfair converts on CUDA only)"
    if not args.compile:
        info["compile_note"] = "skipped: --quick on CPU (the inductor C++ build takes minutes)"
    return info


def data_section(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from kdfair_cli.data.trifeature import generate_trifeature, open_trifeature

    t0 = time.perf_counter()
    path = generate_trifeature(work / "tri", image_size=args.size, train_per_combination=args.per_combination,
                               val_per_combination=1, test_per_combination=1, seed=0)
    seconds = time.perf_counter() - t0
    ds = open_trifeature(path)
    n_train = len(ds.split("train").labels)
    return {"path": str(path), "image_size": args.size, "n_train": n_train,
            "n_test": len(ds.split("test").labels), "generate_s": round(seconds, 2)}


def teacher_section(args: argparse.Namespace, work: Path, data: dict) -> dict[str, Any]:
    out = work / "teacher"
    with peak_memory(args.device) as mem:
        t0 = time.perf_counter()
        kdfair("train-teacher", "--data", data["path"], "--arch", "resnet20", "--epochs", args.epochs,
               "--batch-size", args.batch, "--lr", "0.05", "-o", out, "--force", "-q", *gpu_flags(args))
        seconds = time.perf_counter() - t0
    meta = json.loads((out / "model.json").read_text())
    return {"dir": str(out), "seconds_total": round(seconds, 2), **mem,
            "steady_images_per_s": round(steady_rate(out, data["n_train"]), 1),
            "val_acc": meta["final_metrics"]["val_acc"], "device": meta["device"],
            "hyperparameters": {k: meta["hyperparameters"][k] for k in ("amp", "channels_last", "compile")}}


def bare_section(args: argparse.Namespace, data: dict, teacher: dict) -> dict[str, Any]:
    """The same model, batch and epochs in a plain PyTorch loop; kdfair's steady rate over its own."""
    if teacher.get("status") != "ok":
        raise Skip("the teacher section did not finish")
    import torch.nn.functional as F

    from kdfair_cli.data.trifeature import open_trifeature
    from kdfair_cli.models.registry import build_model

    ds = open_trifeature(data["path"])
    train = ds.split("train")
    device = torch.device(args.device)
    images = torch.from_numpy(train.images).to(device)
    labels = torch.from_numpy(train.labels.astype("int64")).to(device)
    mean = torch.tensor(ds.info.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(ds.info.std, device=device).view(1, -1, 1, 1)
    torch.manual_seed(0)
    model = build_model("resnet20", ds.info.num_classes, ds.info.input_shape).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    if args.compile:
        model.compile()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    n = len(labels)
    epoch_seconds = []
    with peak_memory(args.device) as mem:
        for epoch in range(args.epochs):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            order = torch.randperm(n, device=device)
            for i in range(0, n, args.batch):
                idx = order[i:i + args.batch]
                x = (images[idx].float() / 255 - mean) / std
                if cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                    loss = F.cross_entropy(model(x).float(), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            float(loss.detach())  # synchronises
            epoch_seconds.append(time.perf_counter() - t0)
    steady = epoch_seconds[1:] or epoch_seconds
    bare_rate = n * len(steady) / sum(steady)
    return {"steady_images_per_s": round(bare_rate, 1), **mem,
            "kdfair_over_bare": round(teacher["steady_images_per_s"] / bare_rate, 3),
            "note": "bare loop: no augmentation, no validation, no state saving"}


def predict_section(args: argparse.Namespace, work: Path, data: dict, teacher: dict) -> dict[str, Any]:
    if teacher.get("status") != "ok":
        raise Skip("the teacher section did not finish")
    rates = {}
    with peak_memory(args.device) as mem:
        for split, n in (("train", data["n_train"]), ("test", data["n_test"])):
            t0 = time.perf_counter()
            kdfair("predict", teacher["dir"], "--split", split, "-o", work / f"teacher-{split}.parquet",
                   "--device", args.device)
            rates[split] = round(n / (time.perf_counter() - t0), 1)
    return {"images_per_s": rates, "cache": str(work / "teacher-train.parquet"), **mem}


def distill_section(args: argparse.Namespace, work: Path, data: dict, teacher: dict,
                    predict: dict) -> dict[str, Any]:
    if teacher.get("status") != "ok" or predict.get("status") != "ok":
        raise Skip("needs the teacher and its cached logits")
    common = ["--data", data["path"], "--arch", "lenet5", "-T", "4", "--epochs", args.epochs, "--batch-size",
              args.batch, "--lr", "0.05", "--force", "-q", *gpu_flags(args)]
    out: dict[str, Any] = {}
    for mode, source in (("offline", ["--teacher-logits", predict["cache"]]), ("online", ["--teacher", teacher["dir"]])):
        with peak_memory(args.device) as mem:
            t0 = time.perf_counter()
            kdfair("distill", *source, *common, "-o", work / f"ds-{mode}")
            seconds = time.perf_counter() - t0
        out[mode] = {"seconds_total": round(seconds, 2),
                     "steady_images_per_s": round(steady_rate(work / f"ds-{mode}", data["n_train"]), 1), **mem}
    out["online_over_offline_time"] = round(out["offline"]["steady_images_per_s"]
                                            / out["online"]["steady_images_per_s"], 3)
    return out


def torchrun_section(args: argparse.Namespace, work: Path, data: dict) -> dict[str, Any]:
    """One process under torchrun (DDP, nccl/gloo) against the plain run: same weights?"""
    from safetensors.torch import load_file

    base = ["-m", "kdfair_cli", "train-teacher", "--data", data["path"], "--arch", "resnet20", "--epochs", "1",
            "--batch-size", str(args.batch), "--lr", "0.05", "--force", "-q", "--device", args.device]
    runs = {"plain": [sys.executable, *base, "-o", str(work / "plain")],
            "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                         *base, "-o", str(work / "torchrun")]}
    for name, cmd in runs.items():
        res = subprocess.run(cmd, env=kdfair_env(), capture_output=True, text=True, timeout=max(1, args_left(args)))
        if res.returncode != 0:
            raise RuntimeError(f"{name} run exited {res.returncode}: {res.stderr.strip()[-600:]}")
    meta = json.loads((work / "torchrun" / "model.json").read_text())
    a, b = load_file(str(work / "plain" / "model.safetensors")), load_file(str(work / "torchrun" / "model.safetensors"))
    diff = max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)
    return {"distributed": meta.get("distributed"), "max_abs_weight_diff": diff, "equal": diff == 0.0}


def llm_score_section(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """BBQ option scoring by kdfair (each prompt once, its options packed behind it) and, when installed,
    by lm-eval's HFLM on the same randomly initialised Llama and the same items: items/s, tokens/s
    (context + option tokens of every pair, the same count for both), their agreement."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from benchmarks.bench_lm_score import answers, bbq_strings, kdfair_loglik, lm_eval_loglik, make_hflm
    from kdfair_cli.llm.causal_lm import CausalLM, prefix_ids
    from tests.llm_fakes import tiny_tokenizer

    device = torch.device(args.device)
    tok = tiny_tokenizer(bos=True)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if args.quick:  # a toy of the same family: the code path, in seconds
        shape = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "vocab_size": len(tok), "tie_word_embeddings": False}
        n_items, batch, lm_eval_batches = 32, 16, (48,)
    elif device.type == "cuda":  # DeepSeek-R1-Distill-Qwen-1.5B's shape (Qwen2-1.5B) as a Llama; BPE ids < 400
        shape = {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
                 "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": False}
        n_items, batch, lm_eval_batches = 2048, 64, (64, 192)
    else:  # Qwen2-0.5B's shape: a 1.5B model on CPU would not fit the time box
        shape = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                 "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}
        n_items, batch, lm_eval_batches = 64, 16, (16, 48)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**shape, max_position_embeddings=4096, bos_token_id=0, eos_token_id=1))
    model = model.to(dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    lm = CausalLM(model, tok, device, {"parameters": params}, prefix_ids(tok), 4096)
    ctx, cont = bbq_strings(work / "bbq-llm", n_items)
    n = len(ctx) // 3
    n_tokens = sum(len(p) + len(c) for p, c in zip(*_encoded(lm, ctx, cont)))

    def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
        fn()  # warm-up (kernels, allocator)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - t0

    with peak_memory(args.device) as mem:
        ours, sec = timed(lambda: kdfair_loglik(lm, ctx, cont, batch))
    rec: dict[str, Any] = {
        "model": f"Llama {shape['num_hidden_layers']}x{shape['hidden_size']}, vocab {shape['vocab_size']}, "
                 f"random weights", "parameters": params, "dtype": str(dtype).replace("torch.", ""),
        "items": n, "pairs": len(ctx), "tokens": n_tokens, "threads": torch.get_num_threads(),
        "kdfair": {"batch_items": batch, "items_per_s": round(n / sec, 1), "tokens_per_s": round(n_tokens / sec, 1),
                   **mem}}
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        rec["lm_eval"] = "skipped: lm-eval not installed (pip install -e '.[bench]')"
        return rec
    rec["lm_eval"] = {}
    for bs in lm_eval_batches:
        hf = make_hflm(model, bs, args.device, 4096, tokenizer=tok)
        theirs, sec = timed(lambda hf=hf: lm_eval_loglik(hf, ctx, cont))
        a, tie_a = answers(ours.reshape(-1, 3))
        b, tie_b = answers(theirs.reshape(-1, 3))
        keep = ~(tie_a | tie_b)
        rec["lm_eval"][str(bs)] = {"items_per_s": round(n / sec, 1), "tokens_per_s": round(n_tokens / sec, 1),
                                   "max_abs_loglik_diff": float(np.abs(ours - theirs).max()),
                                   "answers_equal": float((a[keep] == b[keep]).mean()) if keep.any() else 1.0}
    best = max(rec["lm_eval"].values(), key=lambda r: r["items_per_s"])
    rec["kdfair_over_lm_eval_best"] = round(rec["kdfair"]["items_per_s"] / best["items_per_s"], 3)
    return rec


def _encoded(lm: Any, ctx: list[str], cont: list[str]) -> tuple[list[list[int]], list[list[int]]]:
    from kdfair_cli.llm.causal_lm import encode_pairs

    pairs = encode_pairs(lm, ctx, cont)
    return [p for p, _ in pairs], [c for _, c in pairs]


def llm_score_text(r: dict[str, Any]) -> str:
    text = (f"{r['parameters'] / 1e6:,.1f}M-parameter Llama {r['dtype']}, {r['items']} BBQ items: kdfair "
            f"{r['kdfair']['items_per_s']:.0f} items/s ({r['kdfair']['tokens_per_s']:.0f} tok/s)")
    if isinstance(r["lm_eval"], str):
        return text + "; lm-eval " + r["lm_eval"]
    best_bs, best = max(r["lm_eval"].items(), key=lambda kv: kv[1]["items_per_s"])
    return (text + f"; lm-eval best (batch {best_bs}) {best['items_per_s']:.0f} items/s; kdfair/lm-eval = "
            f"{r['kdfair_over_lm_eval_best']:.2f}, answers equal {100 * best['answers_equal']:.1f}%, "
            f"max |dlogL| {best['max_abs_loglik_diff']:.2g}")


# The LLM distillation section (issue 24): its own functions, one entry in main().

#: Llama configs built locally (random weights, nothing downloaded): (hidden, layers, heads, ffn).
#: Full size: a ~0.55B student and a ~1.4B teacher with a 32,000-token vocabulary; --quick: toys.
LLM_SIZES = {"student": (1536, 16, 12, 4096), "teacher": (2048, 24, 16, 5632)}
LLM_SIZES_QUICK = {"student": (64, 2, 4, 128), "teacher": (96, 2, 4, 192)}


def _word_tokenizer(vocab: int) -> Any:
    """A word-level tokenizer of `vocab` tokens w0, w1, ... (BOS <s>, EOS </s>): one token per
    word, so the corpus's sequence lengths are exact."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = {"<s>": 0, "</s>": 1, "<unk>": 2, **{f"w{i}": i + 3 for i in range(vocab - 3)}}
    tok = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _llama_dir(folder: Path, tok: Any, size: tuple[int, int, int, int], max_length: int, seed: int) -> int:
    """A randomly initialised Llama of `size` saved with `tok` in `folder`; returns its parameter count."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, layers, heads, ffn = size
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=ffn,
                                         num_hidden_layers=layers, num_attention_heads=heads,
                                         num_key_value_heads=heads, max_position_embeddings=max_length,
                                         bos_token_id=0, eos_token_id=1, tie_word_embeddings=False))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def llm_distill_section(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Token-level distillation of a config-built Llama student from a larger Llama teacher:
    learned tokens/s of one epoch offline (top-64 cache) and online (live bf16 teacher), with
    peak memory; bf16 autocast and activation checkpointing on CUDA."""
    try:
        import tokenizers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise Skip(f"needs transformers and tokenizers ({exc})") from None
    quick = args.quick or args.device != "cuda"
    sizes = LLM_SIZES_QUICK if quick else LLM_SIZES
    vocab, length, lines, batch = (512, 32, 96, 8) if quick else (32000, 512, 512, 8)
    tok = _word_tokenizer(vocab)
    params = {role: _llama_dir(work / f"lm-{role}", tok, size, length, seed)
              for seed, (role, size) in enumerate(sizes.items())}
    rng = torch.Generator().manual_seed(0)
    words = torch.randint(3, vocab, (lines, length - 2), generator=rng).tolist()
    half = (length - 2) // 2  # prompt and response halves: the response is learned
    corpus = work / "lm-corpus.jsonl"
    corpus.write_text("".join(json.dumps({"prompt": " ".join(f"w{w - 3}" for w in row[:half]),
                                          "response": " " + " ".join(f"w{w - 3}" for w in row[half:])}) + "\n"
                              for row in words))
    common = ["--arch", "causal-lm", "--pretrained", work / "lm-student", "--dataset", "corpus", "--data", corpus,
              "--max-length", length, "-T", "2", "--epochs", "1", "--batch-size", batch, "--optimizer", "adamw",
              "--lr", "1e-4", "--grad-checkpointing", "--force", "-q", "--device", args.device]
    out: dict[str, Any] = {"params": params, "vocab": vocab, "max_length": length, "lines": lines,
                           "bf16_autocast": args.device == "cuda"}
    t0 = time.perf_counter()
    kdfair("predict", work / "lm-teacher", "--dataset", "corpus", "--data", corpus, "--top-k", "64",
           "--cache-temperatures", "2", "--max-length", length, "--device", args.device, "-o", work / "lm-cache")
    out["cache_seconds"] = round(time.perf_counter() - t0, 2)
    for mode, source in (("offline", ["--teacher-logits", work / "lm-cache"]),
                         ("online", ["--teacher", work / "lm-teacher"])):
        with peak_memory(args.device) as mem:
            kdfair("distill", *source, *common, "-o", work / f"lm-ds-{mode}")
        meta = json.loads((work / f"lm-ds-{mode}" / "model.json").read_text())
        import pandas as pd

        seconds = float(pd.read_parquet(work / f"lm-ds-{mode}" / "history.parquet")["seconds"].iloc[0])
        out[mode] = {"train_tokens": meta["lm"]["train_tokens"], "epoch_seconds": round(seconds, 3),
                     "tokens_per_s": round(meta["lm"]["train_tokens"] / seconds, 1), **mem}
    out["offline_over_online"] = round(out["offline"]["tokens_per_s"] / out["online"]["tokens_per_s"], 3)
    return out


def generation_section(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """`kdfair generate`'s engines on one random Qwen2-shaped model (no download): HF batched
    generate, and vLLM on the same token ids when it is installed; prompts/s and their ratio."""
    from kdfair_cli.llm.bbq import open_bbq
    from kdfair_cli.llm.causal_lm import load_causal_lm
    from kdfair_cli.llm.generate import GENERATION_TEMPLATE, HFEngine, Sampling, VLLMEngine, chat_prompts
    from kdfair_cli.llm.scoring import TEMPLATE_FIELDS
    from tests.llm_fakes import tiny_lm, write_bbq

    quick = args.quick or args.device == "cpu"
    n_items, new_tokens, hidden, layers = (16, 16, 64, 2) if quick else (256, 128, 512, 8)
    split = open_bbq(write_bbq(work / "gen-bbq", n_per_category=-(-n_items // 4))).split("test")
    model_dir = tiny_lm(work / "gen-lm", "qwen2", hidden=hidden, layers=layers)
    lm = load_causal_lm(model_dir, torch.device(args.device))
    texts = [GENERATION_TEMPLATE.format(**{f: str(split.attrs[f][i]) for f in TEMPLATE_FIELDS})
             for i in range(min(n_items, len(split.labels)))]
    ids, _ = chat_prompts(lm.tokenizer, texts, False)
    sampling = Sampling(max_new_tokens=new_tokens, temperature=0.0)
    out: dict[str, Any] = {"prompts": len(ids), "max_new_tokens": new_tokens, "hidden": hidden, "layers": layers}
    engine = HFEngine(lm, 64)
    engine.generate(ids[:4], sampling)  # warm-up
    with peak_memory(args.device) as mem:
        t0 = time.perf_counter()
        gens = engine.generate(ids, sampling)[0]
        out["hf_prompts_per_s"] = round(len(ids) / (time.perf_counter() - t0), 2)
    out["hf_tokens"] = int(sum(g.n_tokens for g in gens))
    out.update(mem)
    del lm, engine
    try:
        import vllm  # noqa: F401
    except ImportError:
        out["vllm"] = "not installed"
        return out
    if args.device != "cuda":
        out["vllm"] = "needs CUDA"
        return out
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    v_engine = VLLMEngine(model_dir, seed=0, dtype="bfloat16")
    v_engine.generate(ids[:4], sampling)
    t0 = time.perf_counter()
    v_gens = v_engine.generate(ids, sampling)[0]
    out["vllm_prompts_per_s"] = round(len(ids) / (time.perf_counter() - t0), 2)
    out["vllm_tokens"] = int(sum(g.n_tokens for g in v_gens))
    out["vllm_over_hf"] = round(out["vllm_prompts_per_s"] / out["hf_prompts_per_s"], 2)
    return out


def generation_summary(r: dict) -> str:
    text = f"HF generate {r['hf_prompts_per_s']:.1f} prompts/s ({r['prompts']} x {r['max_new_tokens']} tokens)"
    if "vllm_over_hf" in r:
        return text + f"; vLLM {r['vllm_prompts_per_s']:.1f} prompts/s = {r['vllm_over_hf']:.2f}x HF"
    return text + f"; vLLM: {r['vllm']}"


def args_left(args: argparse.Namespace) -> float:
    return args.check.left()


def paper_section(args: argparse.Namespace, work: Path, data: dict) -> dict[str, Any]:
    """The paper's regime at args.size px, one seed at a time while the next one fits."""
    import pandas as pd

    seeds_done: list[int] = []
    per_seed: list[float] = []
    spec = work / "paper.toml"
    sweep = work / "paper-sweep"
    while True:
        left = args.check.left() - 15  # the report
        if per_seed and left < 1.2 * max(per_seed):
            break
        if not per_seed and left < 5:
            break
        seeds = [*seeds_done, len(seeds_done)]
        spec.write_text(paper_spec(seeds, args.device, data["path"], args.quick))
        t0 = time.perf_counter()
        try:
            res = subprocess.run([sys.executable, "-m", "kdfair_cli", "sweep", "run", str(spec), "-o", str(sweep)],
                                 env=kdfair_env(), capture_output=True, text=True, timeout=max(1, left))
        except subprocess.TimeoutExpired:
            break  # the interrupted seed's finished cells still count in the report
        if res.returncode != 0:
            raise RuntimeError(f"sweep run exited {res.returncode}: {res.stderr.strip()[-600:]}")
        per_seed.append(time.perf_counter() - t0)
        seeds_done = seeds
    if not seeds_done:
        raise Skip("not even one seed fitted in the time left")
    recipe = tomllib.loads(spec.read_text())
    kdfair("report", sweep)
    table = pd.read_csv(sweep / "report" / "table.csv")
    keep = [c for c in table.columns if c in ("model", "temperature", "n_seeds", "accuracy_mean", "accuracy_std",
                                               "eod_color_mean", "n_sc_mean", "n_tc_mean")]
    return {"seeds": seeds_done, "seconds_per_seed": [round(s, 1) for s in per_seed],
            "epochs": {"teacher": recipe["train"]["epochs"], "students": recipe["nds"]["epochs"]},
            "image_size": args.size,
            "table_md": (sweep / "report" / "table.md").read_text(),
            "table": table[keep].to_dict(orient="records")}


def paper_spec(seeds: list[int], device: str, data: str, quick: bool) -> str:
    """The shipped study spec (examples/trifeature.toml) on `data`, at T = 1, 5, 10 and `seeds`."""
    from kdfair_cli.classifier.spec import EXAMPLE_SPEC

    edits = {"seeds": str(seeds), "temperatures": "[1, 5, 10]", "device": f'"{device}"', "path": json.dumps(data),
             "compare_classes": "true" if len(seeds) >= 2 else "false"}
    text = re.sub(r"^\[data\.generate\]\n(?:(?!\[).*\n)*", "", EXAMPLE_SPEC, flags=re.M)  # the data exists
    for key, value in edits.items():
        text = re.sub(rf"^{key} = [^#\n]*", f"{key} = {value}  ", text, flags=re.M)
    if quick:
        text = re.sub(r"^epochs = \d+", "epochs = 1", text, flags=re.M)
    return text




# ------------------------------------------------------------------------------------------ main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="16 px, 1,000 images, short runs: under 2 minutes on CPU.")
    p.add_argument("--budget", type=float, default=None, help="Seconds for the whole check (default 450; --quick 90).")
    p.add_argument("--out", default=None, help="JSON file (default gpu_check-<device>[-quick].json).")
    p.add_argument("--work", default=None, help="Scratch folder (default: a temporary one, removed at the end).")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here (use --device cpu)")
    args.budget = args.budget or (90.0 if args.quick else 450.0)
    args.out = args.out or f"gpu_check-{args.device}{'-quick' if args.quick else ''}.json"
    args.size = 16 if args.quick else 224
    args.per_combination = 1 if args.quick else 8  # the paper regime's 8,000 training images
    args.epochs = 2 if args.quick else 3
    args.batch = 128
    args.compile = args.device == "cuda" or not args.quick
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check = Check(args)
    args.check = check
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kdfair-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    sec = check.results["sections"]
    quick = 0.2 if args.quick else 1.0
    try:
        check.section("env", lambda: env_section(args), needs_s=0, summary=lambda r: (
            f"torch {r['torch']}, {r.get('gpu', 'CPU')}, bf16 autocast {r['bf16_autocast']}, "
            f"nccl {'yes' if r['nccl_available'] else 'no'}, compile {'on' if r['compile'] else 'off'}"))
        check.section("data", lambda: data_section(args, work), needs_s=10 * quick, summary=lambda r: (
            f"Trifeature {r['image_size']} px, {r['n_train']} train / {r['n_test']} test, "
            f"generated in {r['generate_s']:.0f}s"))
        if sec["data"]["status"] != "ok":
            raise Skip("no data")
        data = sec["data"]
        check.section("teacher", lambda: teacher_section(args, work, data), needs_s=60 * quick, summary=lambda r: (
            f"ResNet-20 {r['steady_images_per_s']:.0f} img/s (steady), {r['seconds_total']:.0f}s total, "
            f"{memory_text(r)}, val acc {r['val_acc']:.3f}"))
        check.section("bare loop", lambda: bare_section(args, data, sec["teacher"]), needs_s=30 * quick,
                      summary=lambda r: (f"bare {r['steady_images_per_s']:.0f} img/s; kdfair/bare = "
                                         f"{r['kdfair_over_bare']:.2f}; {memory_text(r)}"))
        check.section("predict", lambda: predict_section(args, work, data, sec["teacher"]), needs_s=10 * quick,
                      summary=lambda r: (f"train {r['images_per_s']['train']:.0f} img/s, test "
                                         f"{r['images_per_s']['test']:.0f} img/s, {memory_text(r)}"))
        check.section("distill", lambda: distill_section(args, work, data, sec["teacher"], sec["predict"]),
                      needs_s=40 * quick, summary=lambda r: (
                          f"LeNet-5 T=4 offline {r['offline']['steady_images_per_s']:.0f} img/s, online "
                          f"{r['online']['steady_images_per_s']:.0f} img/s, online/offline time = "
                          f"{r['online_over_offline_time']:.2f}; online {memory_text(r['online'])}"))
        check.section("torchrun", lambda: torchrun_section(args, work, data), needs_s=40 * quick,
                      summary=lambda r: (
                          f"1-process {r['distributed'] and r['distributed']['backend']} DDP vs plain: "
                          + ("weights equal" if r["equal"] else f"max |dw| = {r['max_abs_weight_diff']:.3g}")))
        check.section("llm score", lambda: llm_score_section(args, work), needs_s=60 * quick,
                      summary=llm_score_text)
        check.section("llm distill", lambda: llm_distill_section(args, work), needs_s=120 * quick, summary=lambda r: (
            f"Llama {r['params']['student'] / 1e6:.3g}M from {r['params']['teacher'] / 1e6:.3g}M: offline "
            f"{r['offline']['tokens_per_s']:.0f} tok/s, online {r['online']['tokens_per_s']:.0f} tok/s "
            f"({r['offline_over_online']:.2f}x); online {memory_text(r['online'])}"))
        check.section("generation", lambda: generation_section(args, work), needs_s=30 * quick,
                      summary=generation_summary)
        check.section("paper regime", lambda: paper_section(args, work, data), needs_s=20 * quick, summary=lambda r: (
            f"{len(r['seeds'])} seed(s) at {r['image_size']} px, ~{sum(r['seconds_per_seed']) / len(r['seeds']):.0f}s "
            f"per seed; DS acc by T: " + ", ".join(
                f"T={row['temperature']:g} {row['accuracy_mean']:.1f}" for row in r["table"]
                if row.get("model") == "ds" and "accuracy_mean" in row)))
    except Skip as exc:
        check.rows.append(("rest", "skipped", str(exc)))
    finally:
        check.write()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(check.table())
    print(f"\n{check.results['elapsed_s']:.0f}s; JSON: {args.out}", file=sys.stderr)
    failed = [n for n, s, _ in check.rows if s == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
