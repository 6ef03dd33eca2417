"""`kdfair sweep` (not implemented yet)."""

import typer

from kdfair_cli.cli.common import guarded, not_implemented

app = typer.Typer(help="Temperature x seed grids, locally or as SLURM array jobs.", no_args_is_help=True)


@app.command("run")
@guarded
def run() -> None:
    """Not implemented yet."""
    not_implemented("sweep run")
