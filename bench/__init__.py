"""bench: a benchmark harness for training-data reconstruction attacks."""

__version__ = "0.1.0"
