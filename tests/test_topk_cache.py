"""The top-k teacher cache: round trip, shard rolling, sha256, refusals, gather order."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from kdfair_cli.errors import KdfairError
from kdfair_cli.llm.topk_cache import CacheWriter, read_cache

K, VOCAB, TEMPS = 3, 20, (1.0, 2.0, 4.0)
LENGTHS = [3, 5, 2, 7, 1, 4]
IDS = [10, 11, 12, 20, 21, 22]
META = {"tokenizer": {"sha256": "ab"}, "teacher": {"dir": "t"}, "corpus": {"sha256": "cd"},
        "max_length": 16, "extra": {"note": "test"}}


def _rows(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"targets": rng.integers(0, VOCAB, n),
            "values": -np.sort(rng.normal(size=(n, K)), axis=1).astype(np.float32),
            "indices": rng.integers(0, VOCAB, (n, K)), "tail_lse": rng.normal(size=(n, len(TEMPS))).astype(np.float32)}


def _write(out: Path, shard_tokens: int = 6, **kw) -> tuple[dict, dict[str, np.ndarray]]:
    rows = _rows(sum(LENGTHS))
    writer = CacheWriter(out, top_k=K, temperatures=TEMPS, vocab=VOCAB, meta=META, shard_tokens=shard_tokens, **kw)
    cut = sum(LENGTHS[:3])  # two batches: sequences 0-2 and 3-5
    writer.add(np.array(IDS[:3]), np.array(LENGTHS[:3]), *(rows[f][:cut] for f in rows))
    writer.add(np.array(IDS[3:]), np.array(LENGTHS[3:]), *(rows[f][cut:] for f in rows))
    return writer.close(), rows


def test_round_trip_shards_and_identity(tmp_path: Path) -> None:
    manifest, rows = _write(tmp_path / "c")
    # shard_tokens = 6: [3, 5] (8 tokens, from the first batch; 2 left), [2, 7] (9), then [1, 4] at close
    assert [(s["sequences"], s["tokens"]) for s in manifest["shards"]] == [(2, 8), (2, 9), (2, 5)]
    for s in manifest["shards"]:
        assert s["sha256"] == hashlib.sha256((tmp_path / "c" / s["file"]).read_bytes()).hexdigest()
    cache = read_cache(tmp_path / "c")
    raw = (tmp_path / "c" / "cache.json").read_bytes()
    assert cache.sha256 == hashlib.sha256(raw).hexdigest() and cache.manifest == json.loads(raw) == manifest
    assert (manifest["format"], manifest["n_sequences"], manifest["n_tokens"]) == (1, 6, 22)
    assert {k: manifest[k] for k in META} == META and manifest["temperatures"] == list(TEMPS)
    assert cache.sample_id.tolist() == IDS and cache.lengths.tolist() == LENGTHS
    starts = [0, 3, 8, 10, 17, 18]
    targets, values, indices, tail = cache.gather(np.array([4, 0, 3]))
    rows_wanted = [*range(17, 18), *range(0, 3), *range(10, 17)]
    assert targets.dtype == np.int32 and indices.dtype == np.int32 and values.dtype == np.float32
    np.testing.assert_array_equal(targets, rows["targets"][rows_wanted])
    np.testing.assert_array_equal(values, rows["values"][rows_wanted])
    np.testing.assert_array_equal(indices, rows["indices"][rows_wanted])
    np.testing.assert_array_equal(tail, rows["tail_lse"][rows_wanted])
    assert cache.starts.tolist() == starts
    assert cache.positions(np.array([22, 10, 20])).tolist() == [5, 0, 3]
    assert len(cache.gather(np.array([], dtype=np.int64))[1]) == 0


def test_temperature_columns(tmp_path: Path) -> None:
    _write(tmp_path / "c")
    cache = read_cache(tmp_path / "c")
    assert cache.column(4.0) == 2 and cache.column(2.0 * (1 + 1e-12)) == 1
    with pytest.raises(KdfairError, match=r"holds temperatures 1, 2, 4, not 3"):
        cache.column(3.0)


def test_tampered_shard_refused(tmp_path: Path) -> None:
    _write(tmp_path / "c")
    shard = tmp_path / "c" / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-4] ^= 0x01  # the lowest bit of the last target id (targets is the last array in the file)
    shard.write_bytes(bytes(data))
    with pytest.raises(KdfairError, match=r"shard-00001\.safetensors: sha256"):
        read_cache(tmp_path / "c")
    read_cache(tmp_path / "c", verify=False)  # still well-formed, only the checksum catches it


def _rewrite_shard(cache_dir: Path, index: int, change) -> None:
    """Replace one shard's arrays and record its new sha256, as a wrongly written cache would."""
    path = cache_dir / f"shard-{index:05d}.safetensors"
    arrays = load_file(str(path))
    change(arrays)
    save_file(arrays, str(path))
    manifest = json.loads((cache_dir / "cache.json").read_text())
    manifest["shards"][index]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (cache_dir / "cache.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("change,message", [
    (lambda a: a.update(values=a["values"].astype(np.float64)), "values is float64"),
    (lambda a: a["values"].__setitem__((0, 0), np.nan), "NaN or infinite"),
    (lambda a: a["tail_lse"].__setitem__((1, 2), np.inf), "tail_lse holds NaN or \\+inf"),
    (lambda a: a["indices"].__setitem__((0, 1), VOCAB), "indices hold token ids outside"),
    (lambda a: a.update(values=a["values"][:, :2].copy()), "values has shape"),
    (lambda a: a.pop("targets"), "holds"),
    (lambda a: a["offsets"].__setitem__(1, 9), "offsets must rise"),
])
def test_malformed_shard_refused(tmp_path: Path, change, message: str) -> None:
    _write(tmp_path / "c")
    _rewrite_shard(tmp_path / "c", 0, change)
    with pytest.raises(KdfairError, match=rf"shard-00000\.safetensors: .*{message}"):
        read_cache(tmp_path / "c")


def test_bad_manifests_refused(tmp_path: Path) -> None:
    _write(tmp_path / "c")
    path = tmp_path / "c" / "cache.json"
    good = json.loads(path.read_text())
    for bad, message in [({**good, "format": 2}, "format 2"), ({**good, "n_tokens": 21}, "n_tokens"),
                         ({**good, "shards": [{**good["shards"][0], "file": "../x.safetensors"}]}, "shards must"),
                         ({**good, "temperatures": [1, 1]}, "temperatures")]:
        path.write_text(json.dumps(bad))
        with pytest.raises(KdfairError, match=rf"cache\.json: .*{message}"):
            read_cache(tmp_path / "c")
    path.write_text("{not json")
    with pytest.raises(KdfairError, match=r"cache\.json: not valid JSON"):
        read_cache(tmp_path / "c")
    (tmp_path / "c" / "shard-00002.safetensors").unlink()
    path.write_text(json.dumps(good))
    with pytest.raises(KdfairError, match=r"shard-00002\.safetensors: missing"):
        read_cache(tmp_path / "c")


def test_interrupted_writer_leaves_no_cache(tmp_path: Path) -> None:
    rows = _rows(sum(LENGTHS))
    writer = CacheWriter(tmp_path / "c", top_k=K, temperatures=TEMPS, vocab=VOCAB, meta=META, shard_tokens=4)
    writer.add(np.array(IDS), np.array(LENGTHS), *rows.values())
    assert list((tmp_path / "c").glob("shard-*"))  # shards rolled, but no manifest yet
    with pytest.raises(KdfairError, match=r"is not a top-k teacher cache: no cache\.json"):
        read_cache(tmp_path / "c")


def test_existing_directory_refused_unless_force(tmp_path: Path) -> None:
    _write(tmp_path / "c", shard_tokens=4)
    with pytest.raises(KdfairError, match=r"exists and is not empty"):
        _write(tmp_path / "c")
    manifest, _ = _write(tmp_path / "c", shard_tokens=100, force=True)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["cache.json", "shard-00000.safetensors"]
    assert read_cache(tmp_path / "c").manifest == manifest


def test_duplicate_sample_ids_and_bad_batches_refused(tmp_path: Path) -> None:
    rows = _rows(4)
    writer = CacheWriter(tmp_path / "c", top_k=K, temperatures=TEMPS, vocab=VOCAB, meta=META)
    with pytest.raises(ValueError, match="values has shape"):
        writer.add(np.array([1]), np.array([4]), rows["targets"], rows["values"][:, :2], rows["indices"],
                   rows["tail_lse"])
    writer.add(np.array([1, 1]), np.array([2, 2]), *rows.values())
    writer.close()
    with pytest.raises(KdfairError, match="sample_id appears twice"):
        read_cache(tmp_path / "c")


def test_full_vocabulary_cache_keeps_minus_infinity_tails(tmp_path: Path) -> None:
    writer = CacheWriter(tmp_path / "c", top_k=2, temperatures=[1.0], vocab=2, meta=META)
    writer.add(np.array([0]), np.array([1]), np.array([1]), np.array([[3.0, 1.0]]), np.array([[1, 0]]),
               np.array([[-np.inf]]))
    writer.close()
    assert np.isneginf(read_cache(tmp_path / "c").tail_lse).all()


def test_module_does_not_import_torch() -> None:
    code = "import sys, kdfair_cli.llm.topk_cache; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_tail_mass_is_the_probability_outside_the_top_k(tmp_path):
    """Worked with numpy on full logits: softmax(z/T) summed over the entries not in the top k."""
    import torch

    from kdfair_cli.llm.topk_cache import CacheWriter, read_cache
    from kdfair_cli.llm.kd_loss import topk_from_logits

    rng = np.random.default_rng(0)
    z = rng.normal(size=(7, 12)) * 3
    temps = [1.0, 4.0]
    values, indices, tail = topk_from_logits(torch.from_numpy(z).float(), 3, temps)
    w = CacheWriter(tmp_path / "c", top_k=3, temperatures=temps, vocab=12, meta={})
    w.add(np.array([5, 9]), np.array([3, 4]), rng.integers(0, 12, 7).astype(np.int32), values.numpy(),
          indices.numpy().astype(np.int32), tail.numpy())
    w.close()
    cache = read_cache(tmp_path / "c")
    for t in temps:
        p = np.exp(z / t - np.log(np.exp(z / t).sum(1, keepdims=True)))
        top = np.sort(z, axis=1)[:, -3:]
        want = 1 - np.where(z >= top[:, :1], p, 0).sum(1)
        np.testing.assert_allclose(cache.tail_mass(t), want, rtol=1e-5)
