"""`kdfair group-fairness` (not implemented yet)."""

from kdfair_cli.cli.common import not_implemented


def command() -> None:
    """Not implemented yet."""
    not_implemented("group-fairness")
