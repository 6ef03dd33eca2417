"""What every kind of sweep spec checks the same way: value types, tables, the grid of [sweep].

Every error names the spec file and the key at fault and is a KdfairError (one line, exit 2).
Every kind's spec (kdfair_cli.classifier.spec, kdfair_cli.llm.sweep.spec) reads its tables with
`table` and its grid (seeds, temperatures, alpha, ...) with `parse_grid`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdfair_cli.errors import KdfairError
from kdfair_cli.sweep.kinds import DEFAULT_KIND, KINDS
from kdfair_cli.train.config import setting_default, sweep_keys
from kdfair_cli.train.device import check_device_name, resolve_device

#: offline: the teacher runs once (its logits cached) and every temperature reads the cache.
#: online: the teacher runs on every batch.
DISTILLATION_MODES = ("offline", "online")
#: The keys of [sweep] common to every kind.
GRID_KEYS: dict[str, type] = {
    "kind": str, "name": str, "seeds": list, "temperatures": list, **sweep_keys(), "device": str,
    "distillation": str,
}


def where(source: Path, key: str) -> str:
    return f"{source}: {key}"


def check_type(source: Path, key: str, value: Any, expected: type) -> Any:
    """`value` if it has the type a key needs (an int counts as a float); KdfairError otherwise."""
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
        list: isinstance(value, list),
        dict: isinstance(value, dict),
    }[expected]
    if not ok:
        names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
                 list: "a list", dict: "a table"}
        raise KdfairError(f"{where(source, key)}: expected {names[expected]}, got {value!r}")
    if expected is float:
        value = float(value)
        if not math.isfinite(value):
            raise KdfairError(f"{where(source, key)}: expected a finite number, got {value!r}")
    return value


def table(source: Path, doc: dict, name: str, keys: dict[str, type]) -> dict[str, Any]:
    """The keys of table `name` (dotted for a nested one), each checked against `keys`."""
    raw: Any = doc
    for part in name.split("."):
        raw = raw.get(part, {}) if isinstance(raw, dict) else raw
    if not isinstance(raw, dict):
        raise KdfairError(f"{where(source, name)}: expected a table [{name}], got {raw!r}")
    out = {}
    for key, value in raw.items():
        if key not in keys:
            raise KdfairError(f"{where(source, f'{name}.{key}')}: unknown key; expected one of: "
                              f"{', '.join(keys)}")
        out[key] = check_type(source, f"{name}.{key}", value, keys[key])
    return out


def check_top_level(source: Path, doc: dict, tables: tuple[str, ...]) -> None:
    for key in doc:
        if key not in tables:
            raise KdfairError(f"{where(source, key)}: unknown key; expected tables: {', '.join(tables)}")


def spec_kind(source: Path, doc: dict) -> str:
    """[sweep] kind: one of kdfair_cli.sweep.kinds.KINDS (the first when not given)."""
    sweep = doc.get("sweep", {})
    kind = sweep.get("kind", DEFAULT_KIND) if isinstance(sweep, dict) else DEFAULT_KIND
    if kind not in KINDS:
        raise KdfairError(f"{where(source, 'sweep.kind')}: {kind!r}: expected {'|'.join(KINDS)}")
    return kind


def resolve(base: Path, value: str) -> Path:
    """A spec path: relative paths are relative to the spec file's folder."""
    path = Path(value)
    return (path if path.is_absolute() else base / path).resolve()


@dataclass
class Grid:
    """The grid every kind shares: who is trained (seeds), at which temperatures, how."""

    name: str
    seeds: list[int]
    temperatures: list[float]
    alpha: float
    t2_scaling: bool
    distillation: str
    device: str


def parse_grid(source: Path, sweep: dict[str, Any], modes: tuple[str, ...] = DISTILLATION_MODES) -> Grid:
    """The checked grid of a [sweep] table (already type-checked by `table`); `modes`: the
    distillation modes the sweep kind offers (a kind may add its own)."""
    seeds = sweep.get("seeds", [0])
    if not seeds:
        raise KdfairError(f"{where(source, 'sweep.seeds')}: give at least one seed")
    for s in seeds:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise KdfairError(f"{where(source, 'sweep.seeds')}: seeds must be integers >= 0, got {s!r}")
    if len(set(seeds)) != len(seeds):
        raise KdfairError(f"{where(source, 'sweep.seeds')}: seeds repeat: {seeds}")
    temps = sweep.get("temperatures")
    if not temps:
        raise KdfairError(f"{where(source, 'sweep.temperatures')}: missing; give a list such as [1, 2, 5, 10]")
    temperatures: list[float] = []
    for t in temps:
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or t <= 0:
            raise KdfairError(f"{where(source, 'sweep.temperatures')}: temperatures must be positive "
                              f"numbers, got {t!r}")
        temperatures.append(float(t))
    if len(set(temperatures)) != len(temperatures):
        raise KdfairError(f"{where(source, 'sweep.temperatures')}: temperatures repeat: {temps}")
    distillation = sweep.get("distillation", "offline")
    if distillation not in modes:
        raise KdfairError(f"{where(source, 'sweep.distillation')}: '{distillation}': expected "
                          f"{'|'.join(modes)}")
    alpha = sweep.get("alpha", setting_default("alpha"))
    if not 0 <= alpha <= 1:
        raise KdfairError(f"{where(source, 'sweep.alpha')}: must be in [0, 1], got {alpha}")
    device = sweep.get("device", "auto")
    try:
        check_device_name(device)
    except KdfairError as exc:
        raise KdfairError(f"{where(source, 'sweep.device')}: {str(exc).removeprefix('--device ')}") from None
    return Grid(name=sweep.get("name", source.stem), seeds=list(seeds), temperatures=temperatures,
                alpha=float(alpha), t2_scaling=sweep.get("t2_scaling", setting_default("t2_scaling")), distillation=distillation,
                device=device)


def check_device_available(source: Path, spec_device: str, device: str | None) -> None:
    """Before any cell runs: the device (the --device override, else the spec's) exists here."""
    try:
        resolve_device(device or spec_device)
    except KdfairError as exc:
        shown = "--device" if device else where(source, "sweep.device")
        raise KdfairError(f"{shown}: {str(exc).removeprefix('--device ')}") from None
