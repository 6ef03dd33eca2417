"""The shipped completion scripts match the CLI (regenerate with `python -m kdfair_cli.completions`)."""

from kdfair_cli.completions import DEFAULT_DIR, SHELLS, generate


def test_completion_scripts_are_up_to_date() -> None:
    for shell, text in generate().items():
        path = DEFAULT_DIR / SHELLS[shell]
        assert path.exists(), f"{path} missing: run `python -m kdfair_cli.completions`"
        assert path.read_text() == text, f"{path} is out of date: run `python -m kdfair_cli.completions`"


def test_scripts_name_every_command() -> None:
    text = generate()["bash"]
    for name in ("sweep run", "sweep status", "sweep slurm", "report", "demo", "distill"):
        assert f"#   {name}:" in text
    assert "_KDFAIR_COMPLETE" in text
