"""`kdfair data`: generate built-in datasets (real datasets are read in place)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import typer

from kdfair_cli.cli.common import console, guarded, print_json
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
