"""User-facing errors: the CLI prints the message on one line and exits with code 2, no traceback."""

import errno


class UserError(Exception):
    """Bad input from the user (a spec, a path, a value). The message names what is wrong and the valid choices."""


def choices(valid: object) -> str:
    """Format the valid choices for an error message: 'a, b, c'."""
    return ", ".join(str(v) for v in valid)  # type: ignore[attr-defined]


# Failures of the file system that are the user's to fix (space, permissions, a file in the way), not bugs.
DISK_ERRORS = {
    errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EACCES: "permission denied",
    errno.EPERM: "not permitted", errno.EROFS: "read-only file system", errno.ENOTDIR: "a file is in the way of a folder",
    errno.EEXIST: "already exists", errno.EISDIR: "is a folder", errno.EMFILE: "too many open files",
}


def disk_error(error: OSError) -> UserError | None:
    """The one-line UserError for a file-system failure the user can fix, naming the path; None for other errors."""
    what = DISK_ERRORS.get(error.errno or -1)
    if what is None:
        return None
    where = error.filename if error.filename is not None else "an output file"
    return UserError(f"{where}: cannot write: {what} ({error.strerror}); finished runs and their results are kept")
