"""The classifier sweep kind (image and text classifiers, the paper's grid) as the engine sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdfair_cli.classifier import work
from kdfair_cli.classifier.cells import build_classifier_cells
from kdfair_cli.classifier.spec import EXAMPLE_SPEC, SweepSpec, parse_spec
from kdfair_cli.sweep.kinds import SweepKind


def _record(spec: SweepSpec) -> dict[str, Any]:
    return {"spec": str(spec.source), "name": spec.name, "seeds": spec.seeds, "temperatures": spec.temperatures,
            "alpha": spec.alpha, "t2_scaling": spec.t2_scaling, "distillation": spec.distillation,
            "dataset": spec.dataset, "data": str(spec.data_path), "roles": spec.roles,
            "group_attributes": spec.group_attributes, "pairs": spec.pairs}


def _prepare_data(spec: SweepSpec, generate_once: Any, log: Any) -> None:
    from kdfair_cli.data.trifeature import generate_trifeature

    generate_once(spec.data_path, lambda: (spec.data_path / "manifest.json").exists(),
                  lambda: generate_trifeature(spec.data_path, **spec.generate), "Trifeature", log)


def _report(sweep_dir: Path, out: Path | None) -> Any:
    from kdfair_cli.classifier.report import build_report  # pandas and matplotlib: only for a report

    return build_report(sweep_dir, out)


KIND = SweepKind(
    name="classifier", parse=parse_spec, example=EXAMPLE_SPEC, build_cells=build_classifier_cells,
    work={"train": work.model_work, "cache": work.cache_work, "fair": work.fair_work,
          "classes": work.classes_work, "pairs": work.pairs_work},
    prepare_data=_prepare_data, record=_record, report=_report,
    analyses="group/individual fairness per model, #TC/#SC per temperature",
)
