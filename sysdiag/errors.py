"""Errors the user can fix (exit 2). Kept import-light: the CLI catches them."""


class InputError(ValueError):
    """Bad input the user can fix: the message is one line naming the file or option
    and what to do (unknown symptom, bad snapshot, bad rule file, bad --pid...)."""
