"""Errors the CLI turns into one clear line and a non-zero exit code."""


class OnlyIfError(Exception):
    """A user-facing error: bad input data, a missing file, an impossible request (exit code 1)."""

    exit_code = 1


class ConfigError(OnlyIfError):
    """A bad configuration value: unknown key, wrong type, out of range (exit code 2)."""

    exit_code = 2
