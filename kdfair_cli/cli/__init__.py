"""Thin typer front-ends: parse options, call a plain function, print."""
