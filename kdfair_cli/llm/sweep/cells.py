"""The cells of an LLM sweep, in stage order (each stage a contiguous index range):

    train     teacher (only when [teacher] gives a corpus), nds-s<seed>
    cache     cache-teacher                    (offline: the teacher's top-k logits, every T)
              gen-T<T>-s<seed>                 (sequence: the teacher's text at sampling T, seed)
    distill   ds-T<T>-s<seed>
    audit     audit-<model cell>               (BBQ of each model, scored or generated: preds.parquet,
                                                bias scores)
    analyses  compare-T<T>                     (DS vs NDS at T over the seeds: paired test, flips)
              compare-teacher-T<T>             (DS vs the teacher at T: paired test, flips)

The "cache" stage holds what the teacher gives its students: top-k logits once, or (sequence) one
generated corpus per temperature and seed, so the seeds replicate the whole path, sampling
included. One teacher serves every seed (it is given, or trained once with [teacher] seed). The
audit of a teacher used as it is reads its pretrained directory. Hashes as for every sweep
(kdfair_cli.sweep.cell.number): a changed audit setting reruns the audits and comparisons only.
"""

from __future__ import annotations

from typing import Any

from kdfair_cli.llm.sequence import SIDECAR_SUFFIX
from kdfair_cli.llm.sweep.spec import LLMSweepSpec
from kdfair_cli.sweep.cell import Cell, fmt_t, number

MODEL_OUTPUTS = ["model/model.json", "metrics.json"]
AUDIT_OUTPUTS = ["preds.parquet", "metrics.json"]
COMPARE_OUTPUTS = ["metrics.json", "flips.parquet"]
GENERATED = "corpus.jsonl"  # a gen cell's corpus; its provenance sidecar beside it
TEACHER = "teacher"
CACHE = "cache-teacher"


def gen_id(t: float, seed: int) -> str:
    return f"gen-T{fmt_t(t)}-s{seed}"


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
    sequence = spec.sequence
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
    if sequence:
        prompts = {"prompts": str(spec.prompts) if spec.prompts else None, "corpus": data}
        for t in spec.temperatures:
            for seed in spec.seeds:
                cells.append(Cell(gen_id(t, seed), "lm-generate", "cache",
                                  {"prompts": prompts, "teacher": _teacher_config(spec), "temperature": t,
                                   "seed": seed, "generation": spec.generation},
                                  deps=list(teacher_deps), outputs=[GENERATED, GENERATED + SIDECAR_SUFFIX]))
    for t in spec.temperatures:
        for seed in spec.seeds:
            if sequence:
                config = {"role": "ds", "seed": seed, "temperature": t, "pretrained": student,
                          "train": spec.roles["ds"], "distillation": spec.distillation, "corpus": gen_id(t, seed)}
                deps = [gen_id(t, seed)]
            else:
                config = {"data": data, "role": "ds", "seed": seed, "temperature": t, "alpha": spec.alpha,
                          "t2_scaling": spec.t2_scaling, "pretrained": student, "train": spec.roles["ds"],
                          "distillation": spec.distillation, "teacher": _teacher_config(spec)}
                deps = [CACHE] if offline else list(teacher_deps)
            cells.append(Cell(ds_id(t, seed), "lm-train", "distill", config, deps=deps, outputs=MODEL_OUTPUTS))
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
    for t in spec.temperatures:  # DS against its teacher: what distillation kept of the teacher's bias
        deps = [audit_id(ds_id(t, s)) for s in spec.seeds] + [audit_id(TEACHER)]
        cells.append(Cell(f"compare-teacher-T{fmt_t(t)}", "compare", "analyses",
                          {"temperature": t, "audit": spec.audit, "against": TEACHER}, deps=deps,
                          outputs=COMPARE_OUTPUTS))
    return number(cells)
