"""The work of each cell kind of a classifier sweep: train/distil and predict, cache the
teacher's logits, build the pairs, and the analyses (kdfair_cli.classifier.analyses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdfair_cli.classifier import analyses
from kdfair_cli.classifier.spec import SweepSpec
from kdfair_cli.io.atomic import write_text_atomic
from kdfair_cli.sweep.cell import Cell, train_once


def model_work(spec: SweepSpec, cell: Cell, sweep_dir: Path, device: str, verbose: bool) -> dict[str, Any]:
    from kdfair_cli.inference import predict_split
    from kdfair_cli.io.modeldir import META

    d = cell.dir(sweep_dir)
    model_dir = d / "model"
    conf = cell.config
    cache = teacher = None
    if conf["role"] == "ds":
        dep = Path(sweep_dir).resolve() / "cells" / cell.deps[0]
        if conf.get("distillation") == "online":
            teacher = str(dep / "model")
        else:
            cache = str(dep / "train-logits.parquet")
    cfg = spec.train_config(conf["role"], conf["seed"], str(model_dir), temperature=conf.get("temperature"),
                            teacher_logits=cache, teacher=teacher)
    cfg.device = device
    train_once(cfg, verbose)
    res = predict_split(model_dir, split=spec.split, device=device)
    res.write(d / "preds.parquet")
    meta = json.loads((model_dir / META).read_text())
    acc = res.accuracy
    metrics = {"accuracy": acc, "n": int(len(res.label)), "split": spec.split, "role": conf["role"],
               "arch": meta["arch"], "seed": conf["seed"], "temperature": conf.get("temperature"),
               "val_acc": meta["final_metrics"]["val_acc"], "train_seconds": meta.get("train_seconds"),
               "parameters": meta.get("parameters")}
    write_text_atomic(d / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return {"accuracy": acc}


def cache_work(spec: SweepSpec, cell: Cell, sweep_dir: Path, device: str, verbose: bool = False) -> dict[str, Any]:
    from kdfair_cli.inference import predict_split

    teacher = Path(sweep_dir) / "cells" / cell.deps[0] / "model"
    res = predict_split(teacher, split="train", device=device)
    res.write(cell.dir(sweep_dir) / "train-logits.parquet")
    return {"n": int(len(res.label))}


def fair_work(spec: SweepSpec, cell: Cell, sweep_dir: Path, device: str = "cpu", verbose: bool = False) -> dict[str, Any]:
    cells_dir = Path(sweep_dir) / "cells"
    preds = cells_dir / cell.deps[0] / "preds.parquet"
    out: dict[str, Any] = {"model": cell.deps[0]}
    if spec.group_attributes:
        out["group"] = analyses.group_fairness(preds, spec.group_attributes, cell.config["tests"])
    if spec.pairs != "none":
        out["individual"] = analyses.individual_fairness(preds, cells_dir / "pairs" / "pairs.parquet",
                                                         cell.config["tests"])
    write_text_atomic(cell.dir(sweep_dir) / "metrics.json", json.dumps(out, indent=2) + "\n")
    return out


def classes_work(spec: SweepSpec, cell: Cell, sweep_dir: Path, device: str = "cpu", verbose: bool = False) -> dict[str, Any]:
    cells_dir = Path(sweep_dir) / "cells"

    def preds(prefix: str) -> list[Path]:
        return [cells_dir / d / "preds.parquet" for d in cell.deps if d.startswith(prefix)]

    ds = preds("ds-")
    tc = analyses.compare_classes(preds("teacher-"), ds)
    sc = analyses.compare_classes(preds("nds-"), ds)
    out = {"temperature": cell.config["temperature"], "n_tc": tc["n_significant"], "n_sc": sc["n_significant"],
           "n_classes": tc["n_classes"], "test": tc.get("test"), "teacher_vs_ds": tc, "nds_vs_ds": sc}
    write_text_atomic(cell.dir(sweep_dir) / "metrics.json", json.dumps(out, indent=2) + "\n")
    return out


def pairs_work(spec: SweepSpec, cell: Cell, sweep_dir: Path, device: str = "cpu", verbose: bool = False) -> dict[str, Any]:
    analyses.make_pairs(cell.dir(sweep_dir) / "pairs.parquet", dataset=spec.dataset, data=spec.data_path,
                        split=spec.split, source=spec.pairs, k=spec.pairs_k, attribute=spec.pairs_attribute)
    return {}
