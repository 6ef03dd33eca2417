"""`kdfair data`: generate built-in datasets (real datasets are read in place)."""

import typer

from kdfair_cli.cli.common import guarded, not_implemented

app = typer.Typer(help="Generate built-in datasets (real datasets are read where they are).", no_args_is_help=True)


@app.command("trifeature")
@guarded
def trifeature() -> None:
    """Not implemented yet."""
    not_implemented("data trifeature")
