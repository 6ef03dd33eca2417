"""The LLM sweep kind (causal LMs distilled on a corpus, audited on BBQ) as the engine sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdfair_cli.llm.sweep import work
from kdfair_cli.llm.sweep.cells import build_llm_cells
from kdfair_cli.llm.sweep.spec import LLM_EXAMPLE_SPEC, LLMSweepSpec, parse_llm_spec
from kdfair_cli.sweep.kinds import SweepKind


def _prepare_data(spec: LLMSweepSpec, generate_once: Any, log: Any) -> None:
    generate_once(spec.data_path, lambda: work.toy_made(spec), lambda: work.make_toy(spec), "the LLM toy", log)


def _report(sweep_dir: Path, out: Path | None) -> Any:
    from kdfair_cli.llm.sweep.report import build_llm_report  # pandas and matplotlib: only for a report

    return build_llm_report(sweep_dir, out)


KIND = SweepKind(
    name="llm", parse=parse_llm_spec, example=LLM_EXAMPLE_SPEC, build_cells=build_llm_cells,
    work={"lm-train": work.lm_train_work, "lm-cache": work.lm_cache_work, "lm-generate": work.lm_generate_work,
          "audit": lambda spec, cell, sweep_dir, device, verbose: work.audit_work(spec, cell, sweep_dir, device),
          "compare": lambda spec, cell, sweep_dir, device, verbose: work.compare_work(spec, cell, sweep_dir)},
    prepare_data=_prepare_data, record=LLMSweepSpec.record, report=_report,
    analyses="DS vs NDS and DS vs teacher per temperature (paired tests, flips)",
)
