"""Exceptions the CLI turns into one-line messages (exit code 2)."""


class TflgraphError(Exception):
    """Base of every error tflgraph reports to users."""


class ModelError(TflgraphError, ValueError):
    """The input is not a valid TFLite model (or references something it does not contain)."""
