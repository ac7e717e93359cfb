"""User-facing errors: the CLI prints the message on one line and exits with code 2, no traceback."""


class UserError(Exception):
    """Bad input from the user (a spec, a path, a value). The message names what is wrong and the valid choices."""


def choices(valid: object) -> str:
    """Format the valid choices for an error message: 'a, b, c'."""
    return ", ".join(str(v) for v in valid)  # type: ignore[attr-defined]
