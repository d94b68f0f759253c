"""The one exception type a user sees: the CLI prints its message on one line and exits with code 2."""


class GenfillError(Exception):
    """A problem with the user's input (a file, a flag, a config key), never a bug in genfill."""
