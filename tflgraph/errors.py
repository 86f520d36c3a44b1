"""Exceptions the CLI turns into one-line messages (exit code 2)."""


class TflgraphError(Exception):
    """Base of every error tflgraph reports to users."""


class ModelError(TflgraphError, ValueError):
    """The input is not a valid TFLite model (or references something it does not contain)."""


def did_you_mean(word: str, choices) -> str:
    """' (did you mean X?)' naming the closest of `choices` to `word`, or '' if none is close."""
    import difflib

    upper = {str(c).upper(): c for c in choices}
    close = difflib.get_close_matches(str(word).upper(), list(upper), n=1, cutoff=0.6)
    return f" (did you mean {upper[close[0]]}?)" if close else ""
