"""The options of `kdfair data llm-toy` (also the keys of an LLM sweep's [data.generate]), with
their defaults and checks. Kept apart from the generator so the CLI and the spec parser read them
without importing it."""

from __future__ import annotations

from typing import Any

from kdfair_cli.errors import KdfairError

DEFAULTS: dict[str, Any] = {"seed": 0, "corpus_per_category": 1500, "audit_per_category": 500,
                            "planted_rate": 0.8, "guess_rate": 0.3}
#: The smallest corpus / audit per category: two items of each (condition, polarity).
MIN_PER_CATEGORY = 8


def check_options(seed: int, corpus_per_category: int, audit_per_category: int, planted_rate: float,
                  guess_rate: float) -> None:
    """KdfairError naming the option when a value is out of range."""
    if seed < 0:
        raise KdfairError(f"--seed must be >= 0, got {seed}")
    for name, n in (("--corpus-per-category", corpus_per_category), ("--audit-per-category", audit_per_category)):
        if n < MIN_PER_CATEGORY:
            raise KdfairError(f"{name} must be at least {MIN_PER_CATEGORY} (two of each condition and "
                              f"polarity), got {n}")
    for name, rate in (("--planted-rate", planted_rate), ("--guess-rate", guess_rate)):
        if not 0 <= rate <= 1:
            raise KdfairError(f"{name} must be in [0, 1], got {rate}")
