"""Exceptions for user mistakes: each message says what to do."""


class NoiseSearchError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits non-zero."""


class BudgetExceeded(NoiseSearchError):
    """A denoiser call would take a condition past the hard NFE budget."""


class NoiseSearchWarning(UserWarning):
    """A run that works but probably not as intended (the CLI prints it on one line)."""


class RenamedWarning(FutureWarning):
    """An old spelling (a parameter, flag or file key) that still works until the next release. A FutureWarning,
    not a DeprecationWarning: Python hides those outside `__main__`, and the users of the command line and of
    preset and schedule files are the ones who must change."""
