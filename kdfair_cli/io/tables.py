"""Read and write Parquet/CSV tables with kdfair's metadata and clear errors.

Every metric command reads files that may come from kdfair or from another tool, so the format
is detected from the bytes (Parquet magic `PAR1`) or the extension, and every failure names the
file. Outputs are written atomically; `-` means stdin/stdout.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from kdfair_cli.errors import KdfairError, first_line
from kdfair_cli.io.atomic import atomic_path, claim_stdin, register_input, write_bytes_atomic

META_KEY = b"kdfair"
PARQUET_MAGIC = b"PAR1"


def _source(path: str | Path) -> tuple[str, Any, bytes]:
    """Return (display name, readable source, first bytes) for a path or '-' (stdin)."""
    if str(path) == "-":
        claim_stdin()
        data = sys.stdin.buffer.read()
        return "<stdin>", pa.BufferReader(data), data[:4]
    p = Path(path)
    if not p.exists():
        raise KdfairError(f"{p}: file does not exist")
    if p.is_dir():
        raise KdfairError(f"{p}: is a directory, expected a Parquet or CSV file")
    register_input(p)
    with open(p, "rb") as fh:
        head = fh.read(4)
    return str(p), str(p), head


def read_table(path: str | Path, columns: list[str] | None = None) -> tuple[pa.Table, dict, str]:
    """Read a Parquet or CSV file; return (table, kdfair metadata dict, display name).

    `columns` restricts a Parquet read to the named columns (all must exist).
    """
    name, src, head = _source(path)
    if len(head) == 0:
        raise KdfairError(f"{name}: file is empty")
    if head == PARQUET_MAGIC:
        try:
            pf = pq.ParquetFile(src)
            table = pf.read(columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise KdfairError(f"{name}: not a readable Parquet file, damaged or truncated "
                              f"({first_line(exc)})") from None
        raw = (pf.schema_arrow.metadata or {}).get(META_KEY)
        meta = _parse_meta(name, raw)
    elif name.lower().endswith((".jsonl", ".json")) or head[:1] in (b"{", b"["):
        raise KdfairError(f"{name}: JSON, not a Parquet or CSV predictions file (lm-eval samples: "
                          "`kdfair import lm-eval` turns them into one; BBQ items: `kdfair predict MODEL "
                          "--dataset bbq`)")
    elif name.lower().endswith((".csv", ".csv.gz")) or _looks_like_text(head):
        try:
            table = pacsv.read_csv(src)
        except (pa.ArrowException, OSError) as exc:
            raise KdfairError(f"{name}: not a readable CSV file ({first_line(exc)})") from None
        if columns is not None:
            table = table.select([c for c in columns if c in table.column_names])
        meta = {}
    else:
        raise KdfairError(f"{name}: not a Parquet or CSV file (expected the Parquet magic bytes "
                          "'PAR1' or a .csv file)")
    if table.num_rows == 0:
        raise KdfairError(f"{name}: file has no rows")
    return table, meta, name


def read_schema(path: str | Path) -> tuple[list[str], dict]:
    """Column names and kdfair metadata without reading the data (Parquet); CSV reads the file."""
    name, src, head = _source(path)
    if head == PARQUET_MAGIC:
        try:
            schema = pq.read_schema(src)
        except (pa.ArrowException, OSError) as exc:
            raise KdfairError(f"{name}: not a readable Parquet file, damaged or truncated "
                              f"({first_line(exc)})") from None
        return list(schema.names), _parse_meta(name, (schema.metadata or {}).get(META_KEY))
    table, meta, _ = read_table(path)
    return list(table.column_names), meta


def _looks_like_text(head: bytes) -> bool:
    return bool(head) and all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def _parse_meta(name: str, raw: bytes | None) -> dict:
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise KdfairError(f"{name}: metadata key 'kdfair' is not valid JSON") from None
    if not isinstance(meta, dict):
        raise KdfairError(f"{name}: metadata key 'kdfair' must be a JSON object")
    return meta


def with_meta(table: pa.Table, meta: dict) -> pa.Table:
    """Attach `meta` as JSON under the file metadata key `kdfair`."""
    existing = dict(table.schema.metadata or {})
    existing[META_KEY] = json.dumps(meta, sort_keys=True).encode()
    return table.replace_schema_metadata(existing)


def table_bytes(table: pa.Table, fmt: str) -> bytes:
    """Serialise a table as 'parquet' or 'csv' bytes."""
    sink = io.BytesIO()
    if fmt == "csv":
        pacsv.write_csv(table, sink)
    else:
        pq.write_table(table, sink)
    return sink.getvalue()


def write_table(path: str | Path, table: pa.Table, fmt: str | None = None) -> None:
    """Write Parquet (default) or CSV (`.csv` extension or fmt='csv') atomically; '-' = stdout."""
    fmt = fmt or ("csv" if str(path).lower().endswith(".csv") else "parquet")
    if str(path) == "-":
        write_bytes_atomic("-", table_bytes(table, fmt))
        return
    with atomic_path(path) as tmp:
        if fmt == "csv":
            pacsv.write_csv(table, str(tmp))
        else:
            pq.write_table(table, str(tmp))
