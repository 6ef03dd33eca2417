"""`kdfair individual-fairness` (not implemented yet)."""

from kdfair_cli.cli.common import not_implemented


def command() -> None:
    """Not implemented yet."""
    not_implemented("individual-fairness")
