"""`kdfair pairs`: build the fixed pair set that individual fairness is judged on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from kdfair_cli import api
from kdfair_cli.cli.common import console, print_json
from kdfair_cli.cli.metric_options import JsonFlag, reflow
from kdfair_cli.io.atomic import check_writable


def command(
    out: Annotated[Path, typer.Option("-o", "--out", help="Pair file to write (Parquet).")],
    dataset: Annotated[str | None, typer.Option(help="Dataset name (pixels, twins).")] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset folder.")] = None,
    split: Annotated[str, typer.Option(help="Split to pair.")] = "test",
    source: Annotated[
        Literal["knn", "twins", "tfidf-knn", "identity-swap"],
        typer.Option(help="knn: k nearest neighbours in the representation; twins: counterfactual "
                     "twins differing only in --attribute (generated Trifeature); tfidf-knn: k nearest "
                     "neighbours in TF-IDF (text); identity-swap: each post paired with its copy with "
                     "identity terms swapped, in the derived split SPLIT+swap (text).")] = "knn",
    k: Annotated[int, typer.Option("-k", "--k", help="Neighbours per sample (knn).")] = 5,
    attribute: Annotated[str | None, typer.Option(help="Attribute the twins differ in "
                                                  "(twins).")] = None,
    features: Annotated[Path | None, typer.Option(help="Representation instead of pixels: .npy "
                                                  "[N, D] or Parquet with a 'features' column "
                                                  "(e.g. a predictions file).")] = None,
    distance: Annotated[
        Literal["auto", "rms", "euclidean", "unit", "cosine"],
        typer.Option(help="d(x, x'): rms = Euclidean / sqrt(D) (RMS pixel difference), euclidean, "
                     "unit (d = 1), or cosine (1 - cos). auto: cosine for tfidf-knn, unit for "
                     "identity-swap, else rms.")] = "auto",
    max_features: Annotated[int, typer.Option(help="TF-IDF vocabulary size (text sources; fitted "
                                              "on the train split).")] = 5000,
    json_out: JsonFlag = False,
) -> None:
    """Build a pair set once per split so every model is judged on the same pairs.

    knn pairs each sample with its k nearest neighbours (exact search, undirected, unique) in a
    fixed input representation: pixels scaled to [0, 1] (from --dataset/--data/--split) or a
    --features file. Text: tfidf-knn does the same in a TF-IDF representation fitted on the train
    split; identity-swap pairs each post holding an identity term (docs/text.md) with its swapped
    copy in the derived split SPLIT+swap. twins pairs generated Trifeature samples that share pose_id and every other
    attribute and differ only in --attribute. Distances are recorded in the file.

    Example:

        kdfair pairs --dataset trifeature --data data/trifeature --split test -k 5 -o pairs/test-knn.parquet
        kdfair pairs --dataset trifeature --data data/trifeature --split test --source twins --attribute color -o pairs/test-color-twins.parquet
        kdfair pairs --dataset hatexplain --data data/hatexplain --split test --source tfidf-knn -k 5 -o pairs/hx-test-tfidf.parquet
        kdfair pairs --dataset hatexplain --data data/hatexplain --split test --source identity-swap -o pairs/hx-test-swap.parquet  (judge `kdfair predict M --split test+swap`)
    """
    check_writable(out)
    res = api.pairs(dataset=dataset, data=data, split=split, source=source, k=k, attribute=attribute,
                    features=features, distance=distance, max_features=max_features)
    res.write(out)
    console.print(f"wrote {out}: {len(res)} pairs ({res.meta['source']}, distance "
                  f"{res.meta['distance']}) over {res.over}")
    if json_out:
        print_json(res.to_dict())


command.__doc__ = reflow(command.__doc__)
