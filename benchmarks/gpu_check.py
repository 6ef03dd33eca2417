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
8. generation  `kdfair generate`'s engines on a random Qwen2-shaped model: HF batched generate
            prompts/s, and vLLM's on the same token ids (with its ratio) when vLLM is installed.
9. paper    with the time left: the paper's Trifeature regime (examples/trifeature.toml's
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
        self.results["table"] = [{"section": n, "status": s, "result": t} for n, s, t in self.rows]
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(self.results, indent=2, default=str) + "\n")
        tmp.replace(out)

    def table(self) -> str:
        width = max(len(n) for n, _, _ in self.rows)
        lines = [f"| {'section':<{width}} | status  | result |", f"|{'-' * (width + 2)}|---------|--------|"]
        lines += [f"| {n:<{width}} | {s:<7} | {t} |" for n, s, t in self.rows]
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
