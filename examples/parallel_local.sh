#!/usr/bin/env bash
# Fan the cells of one stage out over local processes (e.g. one per GPU) without a scheduler:
# each process runs one cell by index; cells never touch each other's files.
set -euo pipefail
SPEC=$1; OUT=$2; JOBS=${3:-2}
for stage in train cache distill; do
    ids=$(kdfair sweep status "$OUT" --json 2>/dev/null | python3 -c \
        "import json,sys; print(' '.join(str(r['index']) for r in json.load(sys.stdin) if r['stage']=='$stage'))" \
        || true)
    [ -n "$ids" ] || { kdfair sweep run "$SPEC" -o "$OUT" --stage "$stage"; continue; }
    printf '%s\n' $ids | xargs -P "$JOBS" -I{} kdfair sweep run "$SPEC" -o "$OUT" --index {}
done
kdfair sweep run "$SPEC" -o "$OUT" --stage analyses
kdfair report "$OUT"
