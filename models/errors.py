"""Errors a user can act on. `run_*` functions raise these; the UI turns them into `gr.Error`."""


class UserError(ValueError):
    """Bad input or a state the user can fix; the message says what to do."""


class ModelUnavailable(UserError):
    """A checkpoint could not be loaded (no network, no token, missing files)."""
