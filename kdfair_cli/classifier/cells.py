"""The classifier sweep's cells, in stage order:

    stage 1 train     pairs, teacher-s<seed>, nds-s<seed>
    stage 2 cache     cache-teacher-s<seed>        (teacher logits on the train split; offline only)
    stage 3 distill   ds-T<T>-s<seed>
    stage 4 analyses  fair-<model id> (group + individual fairness), classes-T<T> (#TC, #SC)
"""

from __future__ import annotations

from kdfair_cli.classifier.analyses import TESTS
from kdfair_cli.classifier.spec import SweepSpec
from kdfair_cli.sweep.cell import Cell, fmt_t, number


def model_outputs() -> list[str]:
    return ["model/model.json", "preds.parquet", "metrics.json"]


def build_classifier_cells(spec: SweepSpec) -> list[Cell]:
    """Every cell of the spec in stage order, with indices and hashes."""
    data = spec.data_identity()
    cells: list[Cell] = []
    models: list[str] = []
    if spec.pairs != "none":
        cells.append(Cell("pairs", "pairs", "train",
                          {"data": data, "split": spec.split, "source": spec.pairs,
                           "attribute": spec.pairs_attribute, "k": spec.pairs_k},
                          outputs=["pairs.parquet"]))
    for role in ("teacher", "nds"):
        for seed in spec.seeds:
            cid = f"{role}-s{seed}"
            cells.append(Cell(cid, "train", "train",
                              {"data": data, "role": role, "seed": seed, "split": spec.split,
                               "train": spec.roles[role]}, outputs=model_outputs()))
            models.append(cid)
    online = spec.distillation == "online"
    if not online:
        for seed in spec.seeds:
            cells.append(Cell(f"cache-teacher-s{seed}", "cache", "cache", {"data": data, "split": "train"},
                              deps=[f"teacher-s{seed}"], outputs=["train-logits.parquet"]))
    for t in spec.temperatures:
        for seed in spec.seeds:
            cid = f"ds-T{fmt_t(t)}-s{seed}"
            config = {"data": data, "role": "ds", "seed": seed, "temperature": t, "alpha": spec.alpha,
                      "t2_scaling": spec.t2_scaling, "split": spec.split, "train": spec.roles["ds"]}
            if online:  # offline cells keep their earlier hashes
                config["distillation"] = "online"
            cells.append(Cell(cid, "train", "distill", config,
                              deps=[f"teacher-s{seed}" if online else f"cache-teacher-s{seed}"],
                              outputs=model_outputs()))
            models.append(cid)
    if spec.group_attributes or spec.pairs != "none":
        for mid in models:
            deps = [mid] + (["pairs"] if spec.pairs != "none" else [])
            cells.append(Cell(f"fair-{mid}", "fair", "analyses",
                              {"group_attributes": spec.group_attributes, "pairs": spec.pairs,
                               "tests": TESTS}, deps=deps,
                              outputs=["metrics.json"]))
    if spec.compare_classes and len(spec.seeds) >= 2:
        for t in spec.temperatures:
            ds = [f"ds-T{fmt_t(t)}-s{s}" for s in spec.seeds]
            deps = [f"teacher-s{s}" for s in spec.seeds] + [f"nds-s{s}" for s in spec.seeds] + ds
            cells.append(Cell(f"classes-T{fmt_t(t)}", "classes", "analyses", {"temperature": t}, deps=deps,
                              outputs=["metrics.json"]))
    return number(cells)
