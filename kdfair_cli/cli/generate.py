"""`kdfair generate`: a causal LM's generated answers on BBQ (an audit), or a teacher's corpus."""

from __future__ import annotations

from pathlib import Path

import typer

from kdfair_cli.cli.common import console
from kdfair_cli.errors import KdfairError


def command(
    model_dir: Path = typer.Argument(..., help="A local transformers causal-LM directory (or a kdfair "
                                     "causal-lm model directory); never a hub name."),
    out: Path = typer.Option(..., "--out", "-o", help="BBQ: predictions Parquet (with --samples K > 1: "
                             "OUT-k0 .. OUT-k{K-1}, one run each). corpus: a JSONL of prompt/response/id "
                             "lines, with OUT.provenance.json beside it."),
    dataset: str = typer.Option(..., "--dataset", help="bbq (a generation audit) or corpus (a teacher "
                                "writes responses to prompt lines)."),
    data: Path = typer.Option(..., "--data", help="BBQ folder, or a prompts .jsonl ({\"prompt\", \"id\"} lines)."),
    chat: bool = typer.Option(None, "--chat/--no-chat", help="Wrap each prompt in the tokenizer's chat "
                              "template (default: when it has one).", show_default=False),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Most tokens generated per answer."),
    temperature: float = typer.Option(0.0, "--temperature", help="Sampling temperature (0: greedy)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass."),
    samples: int = typer.Option(1, "--samples", help="Samples K per prompt (BBQ: K runs; corpus: K lines)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed: the same seed gives the same text."),
    think_tags: str = typer.Option("<think>,</think>", "--think-tags", help="OPEN,CLOSE tags of the "
                                   "reasoning, split off before the answer is read; 'none': no split."),
    prompt_template: str = typer.Option(None, "--prompt-template", help="BBQ prompt with {context} "
                                        "{question} {ans0} {ans1} {ans2} (default: the options lettered "
                                        "(A)-(C) and 'Answer with the letter of the correct option.')."),
    engine: str = typer.Option("hf", "--engine", help="hf (transformers generate) or vllm (kdfair[vllm])."),
    batch_size: int = typer.Option(16, "--batch-size", help="Prompts per generate call (hf engine)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps (hf engine)."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", help="vLLM: GPUs per model copy."),
    data_parallel_size: int = typer.Option(1, "--data-parallel-size", help="vLLM: model copies."),
) -> None:
    """Generate answers with a causal LM: a BBQ audit (answers read from the text) or a teacher corpus.

    BBQ: each item's prompt (chat template when the tokenizer has one), the reasoning split off at
    the think tags, the chosen option extracted (docs/llm.md); the predictions file keeps the text,
    the reasoning's token count and how the answer was read, pred = -1 with a reason when it could
    not be. bias-score, compare-classes and group-fairness read it. corpus: K responses per prompt
    at --temperature, for `distill --kd sequence`.

    Example:

        kdfair generate /models/R1-Distill-Qwen-1.5B --dataset bbq --data BBQ --max-new-tokens 2048 -o preds/r1.parquet

        kdfair generate /models/teacher --dataset corpus --data prompts.jsonl --temperature 0.7 --samples 4 -o teacher-0.7.jsonl
    """
    from kdfair_cli.io.atomic import check_writable, register_input
    from kdfair_cli.llm.answers import parse_think_tags
    from kdfair_cli.llm.generate import (ENGINES, SIDECAR_SUFFIX, Sampling, check_model_dir, generate_bbq, generate_corpus,
                                         has_chat_template, import_vllm, open_engine, sample_paths,
                                         write_generation_file)

    if dataset not in ("bbq", "corpus"):
        raise KdfairError(f"--dataset must be bbq or corpus, got {dataset!r}")
    sampling = Sampling(max_new_tokens, temperature, top_p, samples, seed)
    sampling.check()
    try:
        tags = parse_think_tags(think_tags)
    except ValueError as exc:
        raise KdfairError(f"--think-tags: {exc}") from None
    check_model_dir(model_dir)
    if engine not in ENGINES:
        raise KdfairError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "vllm":
        import_vllm()  # a missing vLLM is one line, before anything loads
    if not data.exists():
        raise KdfairError(f"--data {data} does not exist")
    if chat and not has_chat_template(model_dir):
        raise KdfairError(f"--chat: the tokenizer of {model_dir} has no chat template; use --no-chat")
    register_input(model_dir, "model")
    register_input(data, "data" if data.is_dir() else "file")
    paths = sample_paths(out, samples) if dataset == "bbq" else [out, Path(f"{out}{SIDECAR_SUFFIX}")]
    for p in paths:
        check_writable(p)
    if samples > 1 and temperature == 0:
        console.print(f"[yellow]warning:[/] --samples {samples} at --temperature 0 (greedy) gives {samples} "
                      "identical runs")
    lm, eng = open_engine(model_dir, engine=engine, device=device, batch_size=batch_size, seed=seed,
                          tensor_parallel_size=tensor_parallel_size, data_parallel_size=data_parallel_size)
    if dataset == "corpus":
        prov = generate_corpus(model_dir, data, out, sampling=sampling, engine=eng, lm=lm, chat=chat)
        console.print(f"{model_dir} on {data}: {prov['n_prompts']} prompts x {samples} at T={temperature:g} "
                      f"-> {out} (provenance {out}{SIDECAR_SUFFIX})")
        return
    runs = generate_bbq(model_dir, data, sampling=sampling, engine=eng, lm=lm, chat=chat, think_tags=tags,
                        template=prompt_template)
    for path, run in zip(paths, runs):
        write_generation_file(path, run)
        pred = run["cols"]["pred"]
        acc = float((pred == run["label"]).mean()) if len(pred) else float("nan")
        console.print(f"{model_dir} on bbq (sample {run['meta']['generation']['sample']}): {len(pred)} items, "
                      f"accuracy {acc:.4f}, {int((pred < 0).sum())} unparsed -> {path}")
