"""The sweep's calls into the analysis commands, all in this one module.

The sweep uses the commands' documented command-line interface and their `--json` output, so
a cell computes exactly what a user running `kdfair group-fairness ... --json` by hand gets.
By default the command runs in this process (no interpreter start-up per call, and datasets
registered in this process are visible); KDFAIR_SWEEP_SUBPROCESS=1 runs each as
`python -m kdfair_cli ...` instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kdfair_cli.errors import KdfairError


def run_kdfair(args: list[str], *, want_json: bool = True) -> Any:
    """Run `kdfair ARGS` and return its parsed JSON stdout (or None); raise on failure."""
    args = [str(a) for a in args]
    if os.environ.get("KDFAIR_SWEEP_SUBPROCESS"):
        proc = subprocess.run([sys.executable, "-m", "kdfair_cli", *args], capture_output=True, text=True)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        from kdfair_cli.cli.app import app

        out_buf, err_buf = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out_buf), contextlib.redirect_stderr(err_buf):
            try:
                code = app(args, prog_name="kdfair", standalone_mode=False)
            except SystemExit as exc:  # pragma: no cover - typer may still exit
                code = exc.code
            except KdfairError as exc:
                err_buf.write(f"kdfair: error: {exc}\n")
                code = 2
        code = code if isinstance(code, int) else 0
        out, err = out_buf.getvalue(), err_buf.getvalue()
    if code != 0:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        raise RuntimeError(f"`kdfair {' '.join(args[:1])}` failed (exit {code}): "
                           f"{lines[-1] if lines else 'no message'}")
    if not want_json:
        return None
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        raise RuntimeError(f"`kdfair {args[0]}` printed no JSON: {out[:200]!r}") from None


def make_pairs(out: Path, *, dataset: str, data: Path, split: str, source: str, k: int,
               attribute: str | None) -> None:
    args = ["pairs", "--dataset", dataset, "--data", data, "--split", split, "--source", source, "-o", out]
    if source == "knn":
        args += ["-k", k]
    if attribute:
        args += ["--attribute", attribute]
    run_kdfair(args, want_json=False)


def group_fairness(preds: Path, attributes: list[str]) -> dict[str, dict[str, float]]:
    """attribute -> {"eod": fraction, "dpd": fraction, ...} of one predictions file."""
    args = ["group-fairness", preds, "--json"]
    for a in attributes:
        args += ["--attribute", a]
    res = run_kdfair(args)
    return {a: _pick(res, a) for a in attributes}


def _pick(res: Any, attribute: str) -> dict[str, float]:
    """The attribute's block of group-fairness --json, tolerant of a wrapping key."""
    block = res.get(attribute) if isinstance(res, dict) else None
    if block is None and isinstance(res, dict):
        for key in ("attributes", "results"):
            if isinstance(res.get(key), dict) and attribute in res[key]:
                block = res[key][attribute]
    if not isinstance(block, dict) or "eod" not in block or "dpd" not in block:
        raise RuntimeError(f"group-fairness --json gave no eod/dpd for attribute '{attribute}'")
    return {"eod": float(block["eod"]), "dpd": float(block["dpd"])}


def individual_fairness(preds: Path, pairs: Path) -> dict[str, float]:
    res = run_kdfair(["individual-fairness", preds, "--pairs", pairs, "--json"])
    if isinstance(res, list):
        res = res[0]
    if isinstance(res, dict) and "score" not in res:
        for key in ("results", "models"):
            if isinstance(res.get(key), list) and res[key]:
                res = res[key][0]
                break
    return {"score": float(res["score"]), "n_pairs": int(res.get("n_pairs", 0))}


def compare_classes(a: list[Path], b: list[Path]) -> dict[str, Any]:
    args = ["compare-classes", "--json"]
    for p in a:
        args += ["-a", p]
    for p in b:
        args += ["-b", p]
    res = run_kdfair(args)
    return {"n_significant": int(res["n_significant"]), "n_classes": int(res["n_classes"]),
            "test": res.get("test")}
