"""benchmarks/gpu_check.py --device cpu --quick: the GPU check's logic, on CPU, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ["env", "data", "teacher", "bare loop", "predict", "distill", "torchrun", "llm score", "llm distill",
            "generation", "paper regime"]


@pytest.mark.slow
def test_cpu_quick_check_exits_0_with_a_table_and_json(tmp_path) -> None:
    out = tmp_path / "check.json"
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                          "--out", str(out)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    assert wall < 120, f"--quick took {wall:.0f}s"
    result = json.loads(out.read_text())
    sections = result["sections"]
    assert list(sections) == SECTIONS
    assert all(s["status"] in ("ok", "skipped", "timeout") for s in sections.values()), sections
    assert sections["env"]["status"] == sections["data"]["status"] == "ok"
    assert sections["env"]["bf16_autocast"].startswith("skipped: CPU")
    assert sections["data"]["n_train"] == 1000 and sections["data"]["image_size"] == 16
    # The printed table has one row per section, in order.
    rows = [line.split("|")[1].strip() for line in res.stdout.splitlines()[2:] if line.startswith("|")]
    assert rows == SECTIONS and [r["section"] for r in result["table"]] == SECTIONS
    if sections["bare loop"]["status"] == "ok":
        bare = sections["bare loop"]
        assert bare["kdfair_over_bare"] == pytest.approx(
            sections["teacher"]["steady_images_per_s"] / bare["steady_images_per_s"], rel=0.01)
    llm = sections["llm distill"]
    if llm["status"] == "ok":
        assert llm["offline"]["train_tokens"] == llm["online"]["train_tokens"] > 0
        assert llm["offline"]["tokens_per_s"] > 0 and llm["online"]["tokens_per_s"] > 0
    if sections["torchrun"]["status"] == "ok":
        assert sections["torchrun"]["distributed"] == {"world_size": 1, "backend": "gloo"}
        assert sections["torchrun"]["max_abs_weight_diff"] < 1e-4
    # The LLM scoring section: kdfair against lm-eval (when installed) on the same toy Llama.
    llm = sections["llm score"]
    if llm["status"] == "ok":
        assert llm["items"] == 32 and llm["pairs"] == 96 and llm["kdfair"]["items_per_s"] > 0
        if isinstance(llm["lm_eval"], dict):
            for r in llm["lm_eval"].values():
                assert r["answers_equal"] >= 0.99 and r["max_abs_loglik_diff"] < 1e-4, r
    # Every figure says which machine gave it.
    assert all(s["device"].startswith("CPU") for s in sections.values())
    assert all(r["device"].startswith("CPU") for r in result["table"])
