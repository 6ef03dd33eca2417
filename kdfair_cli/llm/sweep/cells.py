"""The cells of an LLM sweep, in stage order (each stage a contiguous index range):

    train     teacher (only when [teacher] gives a corpus), nds-s<seed>
    cache     cache-teacher                    (offline: the teacher's top-k logits, every T)
    distill   ds-T<T>-s<seed>
    audit     audit-<model cell>               (BBQ scores of each model: preds.parquet, bias scores)
    analyses  compare-T<T>                     (DS vs NDS at T over the seeds: paired test, flips)

One teacher serves every seed (it is given, or trained once with [teacher] seed). The audit of a
teacher used as it is reads its pretrained directory. Hashes as for every sweep
(kdfair_cli.sweep.cell.number): a changed audit setting reruns the audits and comparisons only.
"""

from __future__ import annotations

from typing import Any

from kdfair_cli.sweep.cell import Cell, fmt_t, number
from kdfair_cli.llm.sweep.spec import LLMSweepSpec

MODEL_OUTPUTS = ["model/model.json", "metrics.json"]
AUDIT_OUTPUTS = ["preds.parquet", "metrics.json"]
COMPARE_OUTPUTS = ["metrics.json", "flips.parquet"]
TEACHER = "teacher"
CACHE = "cache-teacher"


def ds_id(t: float, seed: int) -> str:
    return f"ds-T{fmt_t(t)}-s{seed}"


def nds_id(seed: int) -> str:
    return f"nds-s{seed}"


def audit_id(model: str) -> str:
    return f"audit-{model}"


def _teacher_config(spec: LLMSweepSpec) -> dict[str, Any]:
    """What the teacher is: its directory (used as is) or its training."""
    if not spec.teacher_trained:
        return {"pretrained": str(spec.teacher_pretrained)}
    return {"data": {"corpus": str(spec.teacher_corpus), "generate": spec.generate}, "role": "teacher",
            "seed": spec.teacher_seed, "pretrained": str(spec.teacher_pretrained), "train": spec.roles["teacher"]}


def build_llm_cells(spec: LLMSweepSpec) -> list[Cell]:
    data = spec.data_identity()
    offline = spec.distillation == "offline"
    teacher_deps = [TEACHER] if spec.teacher_trained else []
    cells: list[Cell] = []
    if spec.teacher_trained:
        cells.append(Cell(TEACHER, "lm-train", "train", _teacher_config(spec), outputs=MODEL_OUTPUTS))
    student = str(spec.student_pretrained)
    for seed in spec.seeds:
        cells.append(Cell(nds_id(seed), "lm-train", "train",
                          {"data": data, "role": "nds", "seed": seed, "pretrained": student,
                           "train": spec.roles["nds"]}, outputs=MODEL_OUTPUTS))
    if offline:
        cells.append(Cell(CACHE, "lm-cache", "cache",
                          {"data": data, "teacher": _teacher_config(spec), "top_k": spec.top_k,
                           "temperatures": spec.temperatures, "max_length": spec.setting("ds", "max_length"),
                           "batch_size": spec.setting("ds", "batch_size")},
                          deps=list(teacher_deps), outputs=["cache/cache.json"]))
    for t in spec.temperatures:
        for seed in spec.seeds:
            cells.append(Cell(ds_id(t, seed), "lm-train", "distill",
                              {"data": data, "role": "ds", "seed": seed, "temperature": t, "alpha": spec.alpha,
                               "t2_scaling": spec.t2_scaling, "pretrained": student, "train": spec.roles["ds"],
                               "distillation": spec.distillation, "teacher": _teacher_config(spec)},
                              deps=[CACHE] if offline else list(teacher_deps), outputs=MODEL_OUTPUTS))
    models = [TEACHER] + [nds_id(s) for s in spec.seeds] + [ds_id(t, s) for t in spec.temperatures for s in spec.seeds]
    bbq = {"bbq": str(spec.bbq), "generate": spec.generate}
    for model in models:
        config: dict[str, Any] = {"data": bbq, "audit": spec.audit, "model": model}
        deps = [model]
        if model == TEACHER and not spec.teacher_trained:
            config["pretrained"], deps = str(spec.teacher_pretrained), []
        cells.append(Cell(audit_id(model), "audit", "audit", config, deps=deps, outputs=AUDIT_OUTPUTS))
    for t in spec.temperatures:
        deps = [audit_id(ds_id(t, s)) for s in spec.seeds] + [audit_id(nds_id(s)) for s in spec.seeds]
        cells.append(Cell(f"compare-T{fmt_t(t)}", "compare", "analyses",
                          {"temperature": t, "audit": spec.audit}, deps=deps, outputs=COMPARE_OUTPUTS))
    return number(cells)
