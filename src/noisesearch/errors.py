"""Exceptions for user mistakes: each message says what to do."""


class NoiseSearchError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits non-zero."""


class BudgetExceeded(NoiseSearchError):
    """A denoiser call would take a condition past the hard NFE budget."""


class NoiseSearchWarning(UserWarning):
    """A run that works but probably not as intended (the CLI prints it on one line)."""
