"""`kdfair data`: generate built-in datasets (real datasets are read in place)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import typer

from kdfair_cli.cli.common import console, guarded, print_json
from kdfair_cli.llm.toy_options import DEFAULTS
from kdfair_cli.data.trifeature import DEFAULT_PER_COMBINATION

app = typer.Typer(help="Generate built-in datasets (real datasets are read where they are).", no_args_is_help=True)

TRIFEATURE_EPILOG = (
    "Example: kdfair data trifeature -o data/trifeature --image-size 32 --seed 0  "
    "(19,000 images: 8/1/10 per combination for train/val/test; see docs/trifeature.md)"
)


@contextlib.contextmanager
def _progress_bar(description: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr when it is a terminal; nothing when output is piped."""
    if not console.is_terminal:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            if done % 100 == 0 or done == total:
                bar.update(task, completed=done, total=total)

        yield update


@app.command("trifeature", epilog=TRIFEATURE_EPILOG)
@guarded
def trifeature(
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (written atomically)."),
    image_size: int = typer.Option(32, "--image-size", help="Side of the square images, 8 to 224 px."),
    train_per_combination: int = typer.Option(DEFAULT_PER_COMBINATION["train"], "--train-per-combination",
                                              help="Train images per shape x colour x texture."),
    val_per_combination: int = typer.Option(DEFAULT_PER_COMBINATION["val"], "--val-per-combination",
                                            help="Val images per combination."),
    test_per_combination: int = typer.Option(DEFAULT_PER_COMBINATION["test"], "--test-per-combination",
                                             help="Test images per combination."),
    seed: int = typer.Option(0, "--seed", help="Random seed; same options and seed give identical files."),
    spurious: float = typer.Option(0.0, "--spurious",
                                   help="Probability that a train image takes its shape's colour (0 to 1)."),
    twin_group_size: int = typer.Option(2, "--twin-group-size",
                                        help="In val/test, how many colours (1, 2, 5 or 10) share a pose: "
                                             "counterfactual colour twins for `kdfair pairs --source twins`."),
    as_json: bool = typer.Option(False, "--json", help="Print the dataset summary as JSON on stdout."),
) -> None:
    """Generate the Trifeature dataset (label shape; attributes colour and texture)."""
    from kdfair_cli.data.trifeature import generate_trifeature, open_trifeature

    start = time.perf_counter()
    with _progress_bar("rendering Trifeature") as progress:
        path = generate_trifeature(
            out, image_size=image_size, train_per_combination=train_per_combination,
            val_per_combination=val_per_combination, test_per_combination=test_per_combination,
            seed=seed, spurious=spurious, twin_group_size=twin_group_size, progress=progress,
        )
    seconds = time.perf_counter() - start
    dataset = open_trifeature(path, verify=False)
    sizes = {name: entry["num_samples"] for name, entry in dataset.manifest["splits"].items()}
    console.print(f"trifeature: {sum(sizes.values())} images ({', '.join(f'{k} {v}' for k, v in sizes.items())}) "
                  f"at {image_size} px in {seconds:.1f} s -> {path}", highlight=False, soft_wrap=True)
    if as_json:
        print_json({"path": str(path), "split_sizes": sizes, "seconds": round(seconds, 3),
                    **dataset.info.to_json()})


LLM_TOY_EPILOG = ("Example: kdfair data llm-toy -o data/llm-toy --seed 0  (teacher and distillation corpora, "
                  "held-out BBQ items, tiny teacher/student Llamas sharing one tokenizer; see docs/llm.md)")


@app.command("llm-toy", epilog=LLM_TOY_EPILOG)
@guarded
def llm_toy(
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (written atomically)."),
    seed: int = typer.Option(DEFAULTS["seed"], "--seed",
                             help="Random seed of the text and the initial weights; same seed, same bytes."),
    corpus_per_category: int = typer.Option(DEFAULTS["corpus_per_category"], "--corpus-per-category",
                                            help="Lines per BBQ category in each corpus."),
    audit_per_category: int = typer.Option(DEFAULTS["audit_per_category"], "--audit-per-category",
                                           help="Held-out BBQ items per category."),
    planted_rate: float = typer.Option(DEFAULTS["planted_rate"], "--planted-rate",
                                       help="Share of the teacher corpus's ambiguous contexts answered with "
                                            "the stereotyped person (0 to 1)."),
    guess_rate: float = typer.Option(DEFAULTS["guess_rate"], "--guess-rate",
                                     help="Share of the distillation corpus's ambiguous contexts answered with "
                                          "one of the two people, half each way: guesses without a direction "
                                          "(0 to 1)."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest (without checksums) as JSON on stdout."),
) -> None:
    """Generate the CPU-sized LLM toy: corpora with and without a planted stereotype, BBQ audit
    items, and tiny teacher and student causal LMs sharing one tokenizer (never downloads)."""
    import json

    from kdfair_cli.llm.toy import MANIFEST, generate_llm_toy

    start = time.perf_counter()
    path = generate_llm_toy(out, seed=seed, corpus_per_category=corpus_per_category,
                            audit_per_category=audit_per_category, planted_rate=planted_rate,
                            guess_rate=guess_rate)
    manifest = json.loads((path / MANIFEST).read_text())
    manifest.pop("files")
    t = manifest["teacher_corpus"]
    n_ambig = sum(t["ambiguous_answers"].values())
    console.print(f"llm-toy: {t['lines']} teacher lines ({t['ambiguous_answers']['biased']} of {n_ambig} ambiguous "
                  f"answered with the stereotype), {manifest['distill_corpus']['lines']} distillation lines, "
                  f"{sum(manifest['bbq'].values())} BBQ items, vocabulary {manifest['vocab']} "
                  f"in {time.perf_counter() - start:.1f} s -> {path}", highlight=False, soft_wrap=True)
    if as_json:
        print_json({"path": str(path), **manifest})
