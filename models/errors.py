"""Errors a user can act on. `run_*` functions raise these; the UI turns them into `gr.Error`."""


class UserError(ValueError):
    """Bad input or a state the user can fix; the message says what to do."""


class ModelUnavailable(UserError):
    """A checkpoint could not be loaded (no network, no token, missing files)."""


class JobDropped(Exception):
    """The user who asked for this work has gone (closed the page, pressed Stop, lost the connection):
    raised at the next progress report so a long run stops instead of computing for nobody."""
