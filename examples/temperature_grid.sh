#!/usr/bin/env bash
# A temperature grid on one machine: write a spec, run every cell not yet done, report.
# Rerunning is cheap: finished cells are skipped, an interrupted cell resumes.
set -euo pipefail
SPEC=${1:-trifeature.toml}
OUT=${2:-sweeps/trifeature}
[ -f "$SPEC" ] || kdfair sweep init -o "$SPEC"        # edit temperatures, seeds, epochs
kdfair sweep run "$SPEC" -o "$OUT"
kdfair sweep status "$OUT"
kdfair report "$OUT"                                 # table on stdout, plots under $OUT/report
