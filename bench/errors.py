"""Errors that bench reports to the user as one clear line (CLI exit code 2)."""


class BenchInputError(ValueError):
    """Bad input: a config key, a value, a file or a field. The message names it and says the fix."""


class ConfigError(BenchInputError):
    """A `--set` key or value that is unknown, mistyped or out of range."""
