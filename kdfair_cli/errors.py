"""The one exception type for user errors.

Anything the user can fix (a bad path, a missing column, an option out of range) raises
KdfairError with a message naming the file, column or value at fault. The CLI turns it into one
line `kdfair: error: ...` and exit code 2; everything else is a failed run (exit code 1).
"""


class KdfairError(Exception):
    """A user error: bad usage or bad input. Printed as one line, exit code 2."""


class RunFailed(Exception):
    """A failed run whose cause kdfair can name (a damaged sweep cell): one line, exit code 1."""


def require(condition: bool, message: str) -> None:
    """Raise KdfairError(message) unless condition holds."""
    if not condition:
        raise KdfairError(message)


def first_line(detail: object, limit: int = 200) -> str:
    """The first non-empty line of a library's message, shortened: kdfair errors are one line."""
    lines = [line.strip() for line in str(detail).splitlines() if line.strip()]
    text = lines[0] if lines else type(detail).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
