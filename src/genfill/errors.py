"""The one exception type a user sees: the CLI prints its message on one line and exits with code 2."""


class GenfillError(Exception):
    """A problem with the user's input (a file, a flag, a config key), never a bug in genfill."""


def did_you_mean(word: str, choices) -> str:
    """' (did you mean X?)' for the closest of `choices` to a mistyped `word`, else ''."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
