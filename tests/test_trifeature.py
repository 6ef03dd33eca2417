"""Trifeature generator and loader: sizes, balance, determinism, twins, rendering, errors, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kdfair_cli.cli.app import app
from kdfair_cli.data import trifeature_render as render
from kdfair_cli.data.trifeature import generate_trifeature, open_trifeature
from kdfair_cli.errors import KdfairError

SMALL = {"image_size": 16, "train_per_combination": 1, "val_per_combination": 2, "test_per_combination": 1}
COUNTS = {"train": 1, "val": 2, "test": 1}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_trifeature(tmp_path_factory.mktemp("tf") / "small", seed=3, **SMALL)


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.mark.slow
def test_split_sizes_and_balance(small: Path) -> None:
    dataset = open_trifeature(small)
    info = dataset.info
    assert info.name == "trifeature" and info.num_classes == 10 and info.input_shape == (3, 16, 16)
    assert info.class_names[0] == "triangle" and info.attribute("color").values[6] == "purple"
    assert info.attribute("texture").values == render.TEXTURES
    for name, n in COUNTS.items():
        split = dataset.split(name)
        assert len(split) == 1000 * n
        assert split.images.shape == (1000 * n, 3, 16, 16) and split.images.dtype == np.uint8
        assert split.labels.dtype == np.int64
        np.testing.assert_array_equal(split.sample_id, np.arange(1000 * n))
        combo = (split.labels * 10 + split.attrs["color"]) * 10 + split.attrs["texture"]
        np.testing.assert_array_equal(np.bincount(combo, minlength=1000), np.full(1000, n))


@pytest.mark.slow
def test_manifest_stats_and_fingerprint(small: Path) -> None:
    dataset = open_trifeature(small)
    train = dataset.split("train").images / 255.0
    np.testing.assert_allclose(dataset.info.mean, train.mean(axis=(0, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(dataset.info.std, train.std(axis=(0, 2, 3)), atol=1e-6)
    assert dataset.info.options == {**SMALL, "seed": 3, "spurious": 0.0, "twin_group_size": 2}
    assert len(dataset.info.fingerprint) == 64


@pytest.mark.slow
def test_deterministic(small: Path, tmp_path: Path) -> None:
    again = generate_trifeature(tmp_path / "again", seed=3, **SMALL)
    assert _files(again) == _files(small)
    other = generate_trifeature(tmp_path / "other", seed=4, **SMALL)
    assert _files(other)["train_images.npy"] != _files(small)["train_images.npy"]
    assert open_trifeature(other).info.fingerprint != open_trifeature(small).info.fingerprint


def _differ_only_on_shape(a: np.ndarray, b: np.ndarray) -> None:
    """Pixels that differ are on the shape of a or b; everything else is background grey."""
    shape_a, shape_b = (a != 128).any(axis=0), (b != 128).any(axis=0)
    differ = (a != b).any(axis=0)
    assert differ.any()
    assert not (differ & ~shape_a & ~shape_b).any()
    background = ~shape_a & ~shape_b
    assert background.mean() > 0.2
    assert (a[:, background] == 128).all() and (b[:, background] == 128).all()


@pytest.mark.slow
@pytest.mark.parametrize("split_name", ["val", "test"])
def test_twins_share_pose(small: Path, split_name: str) -> None:
    split = open_trifeature(small).split(split_name)
    pose_id, color, texture = split.extra["pose_id"], split.attrs["color"], split.attrs["texture"]
    ids, counts = np.unique(pose_id, return_counts=True)
    assert (counts == 2).all() and len(ids) == len(pose_id) // 2  # default: colour pairs
    order = np.argsort(pose_id, kind="stable")
    a, b = order[0::2], order[1::2]
    assert np.array_equal(pose_id[a], pose_id[b])
    assert np.array_equal(split.labels[a], split.labels[b]) and np.array_equal(texture[a], texture[b])
    assert (color[a] != color[b]).all()
    # Colour pairings are random, not a fixed partner per colour.
    assert len(set(zip(color[a].tolist(), color[b].tolist()))) > 10
    _differ_only_on_shape(split.images[a[0]], split.images[b[0]])
    _differ_only_on_shape(split.images[a[7]], split.images[b[7]])


@pytest.mark.slow
def test_twin_group_size_ten_shares_pose_across_all_colours(tmp_path: Path) -> None:
    path = generate_trifeature(tmp_path / "g10", image_size=8, train_per_combination=1, val_per_combination=1,
                               test_per_combination=1, twin_group_size=10)
    split = open_trifeature(path).split("test")
    _, counts = np.unique(split.extra["pose_id"], return_counts=True)
    assert (counts == 10).all()
    with pytest.raises(KdfairError, match="--twin-group-size 3"):
        generate_trifeature(tmp_path / "g3", image_size=8, twin_group_size=3)


@pytest.mark.slow
def test_train_poses_independent(small: Path) -> None:
    pose_id = open_trifeature(small).split("train").extra["pose_id"]
    assert len(np.unique(pose_id)) == len(pose_id)


def _composite(mask: np.ndarray, texture: np.ndarray, color: int) -> np.ndarray:
    rgb = np.array(render.COLORS[render.COLOR_NAMES[color]])[:, None, None]
    alpha = (mask * texture)[None].astype(np.float64)
    return alpha * rgb + (1 - alpha) * 0.5


def test_rendering_formula_full_resolution() -> None:
    pose = render.draw_poses(np.random.default_rng(7), 1)[0]
    pink, solid, stripes, star = 4, 0, 1, 7
    mask, texture = render.render_layers(star, solid, pose)
    image = render.render_image(star, pink, solid, pose, 224)
    assert (mask == 1).sum() > 1000 and (mask == 0).sum() > 10000
    np.testing.assert_array_equal(image[:, mask == 1].T, np.tile([255, 102, 255], ((mask == 1).sum(), 1)))
    assert (image[:, mask == 0] == 128).all()
    mask, texture = render.render_layers(star, stripes, pose)
    expected = _composite(mask, texture, pink) * 255
    got = render.render_image(star, pink, stripes, pose, 224).astype(np.float64)
    assert np.abs(got - expected).max() <= 0.5 + 1e-4
    assert 0.2 < texture[mask == 1].mean() < 0.8


def test_rendering_downsample_is_area_average() -> None:
    pose = render.draw_poses(np.random.default_rng(11), 1)[0]
    mask, texture = render.render_layers(2, 3, pose)
    full = _composite(mask, texture, 8)
    expected = full.reshape(3, 32, 7, 32, 7).mean(axis=(2, 4)) * 255
    got = render.render_image(2, 8, 3, pose, 32).astype(np.float64)
    assert np.abs(got - expected).max() <= 0.5 + 1e-3
    odd = render.render_image(2, 8, 3, pose, 50)
    assert odd.shape == (3, 50, 50)


@pytest.mark.slow
def test_spurious_train_only(tmp_path: Path) -> None:
    path = generate_trifeature(tmp_path / "sp", image_size=8, train_per_combination=1, val_per_combination=1,
                               test_per_combination=1, spurious=1.0)
    dataset = open_trifeature(path)
    train = dataset.split("train")
    np.testing.assert_array_equal(train.attrs["color"], train.labels)
    assert train.extra["spurious"].all()
    for name in ("val", "test"):
        split = dataset.split(name)
        combo = (split.labels * 10 + split.attrs["color"]) * 10 + split.attrs["texture"]
        np.testing.assert_array_equal(np.bincount(combo, minlength=1000), np.ones(1000))
        assert not split.extra["spurious"].any()
    assert dataset.info.options["spurious"] == 1.0


@pytest.mark.slow
def test_loader_errors(small: Path, tmp_path: Path) -> None:
    with pytest.raises(KdfairError, match="does not exist"):
        open_trifeature(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(small, broken)
    (broken / "val.parquet").unlink()
    with pytest.raises(KdfairError, match="val.parquet"):
        open_trifeature(broken)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(small, corrupt)
    data = bytearray((corrupt / "train_images.npy").read_bytes())
    data[-1] ^= 0xFF
    (corrupt / "train_images.npy").write_bytes(bytes(data))
    dataset = open_trifeature(corrupt)
    dataset.split("val")
    with pytest.raises(KdfairError, match=r"checksum mismatch for .*train_images\.npy"):
        dataset.split("train")

    np.save(corrupt / "test_images.npy", np.zeros((5, 3, 16, 16), dtype=np.uint8))
    with pytest.raises(KdfairError, match=r"test_images\.npy holds uint8 \[5, 3, 16, 16\]; expected uint8 \[1000"):
        open_trifeature(corrupt, verify=False).split("test")

    (corrupt / "manifest.json").unlink()
    with pytest.raises(KdfairError, match="manifest.json is missing"):
        open_trifeature(corrupt)


def test_failed_run_leaves_nothing(tmp_path: Path) -> None:
    def interrupt(done: int, total: int) -> None:
        if done == 50:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_trifeature(tmp_path / "killed", image_size=8, progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_other_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(KdfairError, match="refusing to replace"):
        generate_trifeature(tmp_path, image_size=8)
    assert (tmp_path / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["data", "trifeature", "-o", str(out), "--image-size", "8", "--train-per-combination", "1",
            "--val-per-combination", "1", "--test-per-combination", "1", "--seed", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["split_sizes"] == {"train": 1000, "val": 1000, "test": 1000}
    assert summary["input_shape"] == [3, 8, 8] and summary["options"]["seed"] == 1
    assert "trifeature: 3000 images" in result.stderr
    assert open_trifeature(out).info.fingerprint == summary["fingerprint"]


@pytest.mark.parametrize("bad", [["--spurious", "2"], ["--image-size", "4"], ["--image-size", "225"],
                                 ["--val-per-combination", "0"]])
def test_cli_bad_options(tmp_path: Path, bad: list[str]) -> None:
    result = CliRunner().invoke(app, ["data", "trifeature", "-o", str(tmp_path / "x"), *bad])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdfair: error: ") and bad[0] in lines[0]
    assert not (tmp_path / "x").exists()


def test_cli_help_has_example() -> None:
    result = CliRunner().invoke(app, ["data", "trifeature", "--help"])
    assert result.exit_code == 0 and "Example: kdfair data trifeature -o" in result.output
