"""One line naming the cause of an error, for the command line (``--debug`` shows the rest).

Drivers put server stack traces and request dumps into their messages (a ClickHouse
exception carries the server's stack trace); the first line says what went wrong.
"""

from __future__ import annotations

from .errors import MCBackendError

__all__ = ["describe_error"]


def describe_error(ex: BaseException) -> str:
    """``ex`` as one line: what failed and why, naming the server or file involved."""
    message = _first_line(ex)
    if isinstance(ex, MCBackendError):
        return message
    module = type(ex).__module__.split(".", 1)[0]
    name = type(ex).__name__
    if module == "clickhouse_driver":  # "Code: 192.\nDB::Exception: Unknown user x. Stack trace:"
        return f"ClickHouse: {' '.join(str(ex).split('Stack trace:')[0].split())}"
    if name == "NoCredentialsError" or name == "PartialCredentialsError":
        return (
            f"No S3 credentials: {message} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            """or pass -o '{"key": ..., "secret": ...}')"""
        )
    if module in ("botocore", "aiobotocore"):
        return f"S3: {message}"
    if isinstance(ex, ValueError) and "not known" in message.lower():
        return f"Unknown URL scheme: {message}"
    if isinstance(ex, PermissionError):
        return f"Permission denied: {message}"
    if isinstance(ex, ConnectionError | TimeoutError):
        return f"Cannot connect: {message}"
    if isinstance(ex, FileNotFoundError | ValueError | KeyError | OSError):
        return message
    return f"{name}: {message} (--debug shows the traceback)"


def _first_line(ex: BaseException) -> str:
    text = str(ex.args[0]) if isinstance(ex, KeyError) and ex.args else str(ex)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(ex).__name__).strip("'\"")
