"""illume: a unix filter for talking to language models from a text buffer."""

__version__ = "0.1.0"
