"""The offline teacher cache of causal-LM distillation: top-k logits per token, in safetensors shards.

A cache is a directory:

- `shard-00000.safetensors`, ...: per shard, `sample_id` int64 [S], `offsets` int64 [S+1] (token
  offsets of the sequences within the shard), `targets` int32 [n] (target token ids), `values`
  float32 [n, k] (the teacher's top-k logits at T = 1, descending), `indices` int32 [n, k] (their
  token ids) and `tail_lse` float32 [n, len(temperatures)] (logsumexp over the other vocabulary
  entries of z/T, one column per cached temperature: the tail's mass at T cannot be derived from
  its mass at T = 1).
- `cache.json` (format 1), written last: top_k, temperatures, vocab, the writer's metadata
  (tokenizer, teacher, corpus, max_length, extra), n_sequences, n_tokens and the shards with their
  sha256. Without it the directory is not a cache, so an interrupted pass never looks finished;
  the sha256 of its bytes is the cache's identity.

The cache is read into memory whole: (8k + 4 + 4 * len(temperatures)) bytes per token.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from kdfair_cli.errors import KdfairError, first_line
from kdfair_cli.io.atomic import atomic_path, check_writable, register_input
from kdfair_cli.io.modeldir import sha256_file

FORMAT = 1
MANIFEST = "cache.json"
#: Teacher logits kept per token by default (`kdfair predict --top-k`).
DEFAULT_TOP_K = 64
#: Temperatures a cache serves by default: the paper's grid (`--cache-temperatures`).
DEFAULT_TEMPERATURES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0)
#: name -> (dtype, number of dimensions) of each shard array
FIELDS: dict[str, tuple[type, int]] = {
    "sample_id": (np.int64, 1), "offsets": (np.int64, 1), "targets": (np.int32, 1),
    "values": (np.float32, 2), "indices": (np.int32, 2), "tail_lse": (np.float32, 2)}
_ROW_FIELDS = ("targets", "values", "indices", "tail_lse")
_OWN_KEYS = {"format", "top_k", "temperatures", "vocab", "n_sequences", "n_tokens", "shards"}
_SHARD_NAME = re.compile(r"shard-\d{5,}\.safetensors")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def _check_temperatures(temperatures: Sequence[float]) -> list[float]:
    temps = [float(t) for t in temperatures]
    if not temps or not all(math.isfinite(t) and t > 0 for t in temps):
        raise ValueError(f"cache temperatures must be positive and finite, got {temps}")
    if any(math.isclose(a, b, rel_tol=1e-9) for i, a in enumerate(temps) for b in temps[i + 1:]):
        raise ValueError(f"cache temperatures repeat: {temps}")
    return temps


class CacheWriter:
    """Writes a cache batch by batch; `close()` writes cache.json and returns it.

    Shards end at sequence boundaries, after the first sequence that brings a shard to
    `shard_tokens` tokens. Each shard is written atomically; cache.json last.
    """

    def __init__(self, out_dir: str | Path, *, top_k: int, temperatures: Sequence[float], vocab: int,
                 meta: dict[str, Any], shard_tokens: int = 1 << 20, force: bool = False) -> None:
        if not 1 <= top_k <= vocab:
            raise ValueError(f"top_k {top_k} must lie in 1..vocab ({vocab})")
        if shard_tokens < 1:
            raise ValueError(f"shard_tokens must be >= 1, got {shard_tokens}")
        clash = _OWN_KEYS & meta.keys()
        if clash:
            raise ValueError(f"meta may not set the cache's own fields {sorted(clash)}")
        self.dir = Path(out_dir)
        self.top_k, self.vocab, self.shard_tokens = int(top_k), int(vocab), int(shard_tokens)
        self.temperatures = _check_temperatures(temperatures)
        self.meta = dict(meta)
        if self.dir.exists() and not self.dir.is_dir():
            raise KdfairError(f"output {self.dir} is a file, expected a directory for the teacher cache")
        if self.dir.is_dir() and any(self.dir.iterdir()) and not force:
            raise KdfairError(f"output {self.dir} exists and is not empty; --force replaces the cache in it")
        check_writable(self.dir / MANIFEST)
        if self.dir.is_dir():  # force: the old manifest goes first, so nothing looks finished meanwhile
            (self.dir / MANIFEST).unlink(missing_ok=True)
            for old in self.dir.glob("shard-*.safetensors"):
                old.unlink()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shards: list[dict[str, Any]] = []
        self._pending: dict[str, list[np.ndarray]] = {name: [] for name in ("sample_id", "lengths", *_ROW_FIELDS)}
        self._pending_tokens = 0
        self._closed = False

    def add(self, sample_ids: np.ndarray, lengths: np.ndarray, targets: np.ndarray, values: np.ndarray,
            indices: np.ndarray, tail_lse: np.ndarray) -> None:
        """A batch of S sequences; the row arrays hold their sum(lengths) tokens in sequence order."""
        if self._closed:
            raise RuntimeError("CacheWriter.add after close")
        ids = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
        lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
        n, k, n_t = int(lens.sum()), self.top_k, len(self.temperatures)
        rows = {"targets": np.asarray(targets).reshape(-1), "values": np.asarray(values),
                "indices": np.asarray(indices), "tail_lse": np.asarray(tail_lse)}
        want = {"targets": (n,), "values": (n, k), "indices": (n, k), "tail_lse": (n, n_t)}
        if ids.shape != lens.shape or (lens < 0).any():
            raise ValueError(f"sample_ids {ids.shape} and lengths {lens.shape} differ, or a length is negative")
        for name, shape in want.items():
            if rows[name].shape != shape:
                raise ValueError(f"{name} has shape {rows[name].shape}, expected {shape}")
        for name in ("targets", "indices"):
            if n and (rows[name].min() < 0 or rows[name].max() >= self.vocab):
                raise ValueError(f"{name} outside 0..{self.vocab - 1}")
        if not np.isfinite(rows["values"]).all() or np.isnan(rows["tail_lse"]).any() or \
                np.isposinf(rows["tail_lse"]).any():
            raise ValueError("values must be finite and tail_lse finite or -inf")
        for name, arr in (("sample_id", ids), ("lengths", lens), *rows.items()):
            dtype = FIELDS[name][0] if name in FIELDS else np.int64
            self._pending[name].append(np.ascontiguousarray(arr, dtype=dtype))
        self._pending_tokens += n
        while self._pending_tokens >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def _flush(self, at_least: int) -> None:
        """Write the pending sequences up to the first that brings the shard to `at_least` tokens."""
        pending = {name: np.concatenate(parts) for name, parts in self._pending.items()}
        ends = np.cumsum(pending["lengths"])
        cut = min(int(np.searchsorted(ends, at_least)) + 1, len(ends))
        n = int(ends[cut - 1]) if cut else 0
        arrays = {"sample_id": pending["sample_id"][:cut],
                  "offsets": np.concatenate([[0], ends[:cut]]).astype(np.int64),
                  **{name: pending[name][:n] for name in _ROW_FIELDS}}
        path = self.dir / shard_name(len(self.shards))
        with atomic_path(path) as tmp:
            save_file(arrays, str(tmp))
            digest = sha256_file(tmp)
        self.shards.append({"file": path.name, "sha256": digest, "sequences": cut, "tokens": n})
        self._pending = {"sample_id": [pending["sample_id"][cut:]], "lengths": [pending["lengths"][cut:]],
                         **{name: [pending[name][n:]] for name in _ROW_FIELDS}}
        self._pending_tokens -= n

    def close(self) -> dict[str, Any]:
        """Write the last shard and cache.json; the returned dict is cache.json's content."""
        if self._closed:
            raise RuntimeError("CacheWriter.close called twice")
        if sum(len(a) for a in self._pending["sample_id"]):
            self._flush(self._pending_tokens + 1)
        manifest = {"format": FORMAT, "top_k": self.top_k, "temperatures": self.temperatures,
                    "vocab": self.vocab, **self.meta,
                    "n_sequences": sum(s["sequences"] for s in self.shards),
                    "n_tokens": sum(s["tokens"] for s in self.shards), "shards": self.shards}
        with atomic_path(self.dir / MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1) + "\n")
        self._closed = True
        return manifest


class TopKCache:
    """A cache read into memory; rows of sequences are gathered by position (sample_id order)."""

    def __init__(self, path: Path, manifest: dict[str, Any], sha256: str, arrays: dict[str, np.ndarray]) -> None:
        self.path, self.manifest, self.sha256 = path, manifest, sha256
        self.sample_id: np.ndarray = arrays["sample_id"]
        self.lengths: np.ndarray = arrays["lengths"]
        self.starts: np.ndarray = np.cumsum(self.lengths) - self.lengths  # first token row of each sequence
        self.targets, self.values = arrays["targets"], arrays["values"]
        self.indices, self.tail_lse = arrays["indices"], arrays["tail_lse"]

    @property
    def top_k(self) -> int:
        return int(self.manifest["top_k"])

    @property
    def vocab(self) -> int:
        return int(self.manifest["vocab"])

    @property
    def temperatures(self) -> list[float]:
        return [float(t) for t in self.manifest["temperatures"]]

    def column(self, T: float) -> int:
        """The tail_lse column of temperature T; a temperature not cached is refused."""
        for j, t in enumerate(self.temperatures):
            if math.isclose(float(T), t, rel_tol=1e-9):
                return j
        cached = ", ".join(f"{t:g}" for t in self.temperatures)
        raise KdfairError(f"teacher cache {self.path} holds temperatures {cached}, not {T:g}; the tail's "
                          "mass at a temperature cannot be derived from the others: rerun the cache pass "
                          f"with {T:g} among its temperatures")

    def tail_mass(self, temperature: float) -> np.ndarray:
        """The teacher's probability outside its top k at `temperature`, per token row: the share
        of its distribution the bucket KL lumps into one bucket."""
        tail = self.tail_lse[:, self.column(temperature)].astype(np.float64)
        top = self.values.astype(np.float64) / float(temperature)
        top_lse = np.logaddexp.reduce(top, axis=1) if top.size else np.zeros(len(tail))
        return np.exp(tail - np.logaddexp(top_lse, tail))

    def positions(self, sample_ids: np.ndarray) -> np.ndarray:
        """Positions (for `gather`) of these sample ids; KdfairError naming the first one missing."""
        ids = np.asarray(sample_ids, dtype=np.int64).reshape(-1)
        order = np.argsort(self.sample_id, kind="stable")
        at = np.minimum(np.searchsorted(self.sample_id[order], ids), max(len(order) - 1, 0))
        found = (self.sample_id[order][at] == ids) if len(order) else np.zeros(len(ids), dtype=bool)
        if not found.all():
            raise KdfairError(f"sample {ids[~found][0]} is not in teacher cache {self.path}: the cache was "
                              "made from another corpus (or split)")
        return order[at]

    def gather(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(targets, values, indices, tail_lse) of the sequences at `positions`, concatenated in that order."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        lens = self.lengths[pos]
        out_starts = np.cumsum(lens) - lens
        rows = np.arange(int(lens.sum()), dtype=np.int64) + np.repeat(self.starts[pos] - out_starts, lens)
        return self.targets[rows], self.values[rows], self.indices[rows], self.tail_lse[rows]


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_manifest(m: Any, path: Path) -> None:
    def bad(why: str) -> KdfairError:
        return KdfairError(f"teacher cache manifest {path}: {why}")

    if not isinstance(m, dict):
        raise bad("not a JSON object")
    if m.get("format") != FORMAT:
        raise bad(f"format {m.get('format')!r}; this kdfair reads format {FORMAT}")
    if not (_is_count(m.get("top_k")) and _is_count(m.get("vocab")) and 1 <= m["top_k"] <= m["vocab"]):
        raise bad(f"top_k {m.get('top_k')!r} and vocab {m.get('vocab')!r} must be integers, 1 <= top_k <= vocab")
    temps = m.get("temperatures")
    try:
        _check_temperatures(temps if isinstance(temps, list) else [])
    except (ValueError, TypeError):
        raise bad(f"temperatures {temps!r} must be a list of distinct positive numbers") from None
    shards = m.get("shards")
    if not isinstance(shards, list) or not all(
            isinstance(s, dict) and isinstance(s.get("file"), str) and _SHARD_NAME.fullmatch(s["file"])
            and isinstance(s.get("sha256"), str) and _is_count(s.get("sequences")) and _is_count(s.get("tokens"))
            for s in shards):
        raise bad("shards must be a list of {file: shard-NNNNN.safetensors, sha256, sequences, tokens}")
    for key, part in (("n_sequences", "sequences"), ("n_tokens", "tokens")):
        if m.get(key) != sum(s[part] for s in shards):
            raise bad(f"{key} {m.get(key)!r} is not the sum over its shards")


def _load_shard(path: Path, entry: dict[str, Any], manifest: dict[str, Any], verify: bool) -> dict[str, np.ndarray]:
    def bad(why: str) -> KdfairError:
        return KdfairError(f"teacher cache shard {path}: {why}")

    if not path.is_file():
        raise bad("missing (the cache is incomplete)")
    register_input(path)
    if verify and (digest := sha256_file(path)) != entry["sha256"]:
        raise bad(f"sha256 {digest[:12]}... differs from cache.json's {entry['sha256'][:12]}...; "
                  "the file was changed or damaged")
    try:
        arrays = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise bad(f"not a readable safetensors file ({first_line(exc)})") from None
    if set(arrays) != set(FIELDS):
        raise bad(f"holds {sorted(arrays)}, expected {sorted(FIELDS)}")
    for name, (dtype, ndim) in FIELDS.items():
        if arrays[name].dtype != dtype or arrays[name].ndim != ndim:
            raise bad(f"{name} is {arrays[name].dtype} with {arrays[name].ndim} dimensions, expected "
                      f"{np.dtype(dtype)} with {ndim}")
    s, n, k, n_t = entry["sequences"], entry["tokens"], manifest["top_k"], len(manifest["temperatures"])
    offsets = arrays["offsets"]
    want = {"sample_id": (s,), "offsets": (s + 1,), "targets": (n,), "values": (n, k), "indices": (n, k),
            "tail_lse": (n, n_t)}
    for name, shape in want.items():
        if arrays[name].shape != shape:
            raise bad(f"{name} has shape {arrays[name].shape}, expected {shape} (from cache.json)")
    if offsets[0] != 0 or offsets[-1] != n or (np.diff(offsets) < 0).any():
        raise bad(f"offsets must rise from 0 to {n}")
    if not np.isfinite(arrays["values"]).all():
        raise bad("values hold NaN or infinite logits")
    if np.isnan(arrays["tail_lse"]).any() or np.isposinf(arrays["tail_lse"]).any():
        raise bad("tail_lse holds NaN or +inf")
    for name in ("targets", "indices"):
        if n and (arrays[name].min() < 0 or arrays[name].max() >= manifest["vocab"]):
            raise bad(f"{name} hold token ids outside 0..{manifest['vocab'] - 1}")
    return arrays


def read_cache(dir: str | Path, verify: bool = True) -> TopKCache:
    """Read and check a cache (each shard's sha256 when `verify`); KdfairError naming the file at fault."""
    path = Path(dir)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise KdfairError(f"{path} is not a top-k teacher cache: no {MANIFEST} (an interrupted cache pass "
                          "leaves none; rerun it)")
    register_input(path, "folder")  # nothing may be written inside a cache being read
    register_input(manifest_path)
    raw = manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise KdfairError(f"teacher cache manifest {manifest_path}: not valid JSON ({first_line(exc)})") from None
    _check_manifest(manifest, manifest_path)
    shards = [_load_shard(path / e["file"], e, manifest, verify) for e in manifest["shards"]]
    k, n_t = manifest["top_k"], len(manifest["temperatures"])
    empty = {"sample_id": np.zeros(0, np.int64), "targets": np.zeros(0, np.int32),
             "values": np.zeros((0, k), np.float32), "indices": np.zeros((0, k), np.int32),
             "tail_lse": np.zeros((0, n_t), np.float32)}
    arrays = {name: np.concatenate([empty[name], *(s[name] for s in shards)]) for name in empty}
    arrays["lengths"] = np.concatenate([np.zeros(0, np.int64), *(np.diff(s["offsets"]) for s in shards)])
    if len(np.unique(arrays["sample_id"])) != len(arrays["sample_id"]):
        raise KdfairError(f"teacher cache {path}: a sample_id appears twice across its shards")
    return TopKCache(path, manifest, hashlib.sha256(raw).hexdigest(), arrays)
