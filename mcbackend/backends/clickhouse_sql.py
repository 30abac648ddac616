"""SQL text for ClickHouse: quoted identifiers and string literals, and names the server can hold.

No query is ever %-formatted: clickhouse-driver substitutes parameters with Python's ``%``
operator over the whole query text, so a ``%`` in a quoted run id or variable name
(``r%(lo)s``) would be taken as a placeholder and read another run's data. Every value is
written into the query as a literal instead, quoted here.
"""

from __future__ import annotations

import re

__all__ = [
    "ServerCode",
    "check_identifier",
    "quote_identifier",
    "quote_string",
    "server_code",
    "query_system_tables",
    "table_exists",
    "tables_named",
]

#: The longest identifier, in bytes of its on-disk form. ClickHouse names files after tables
#: and columns (``escapeForFileName``: bytes other than ``[A-Za-z0-9_]`` become ``%XX``) and
#: appends suffixes such as ``.sql.tmp`` or ``.size0.mrk2``; file names hold 255 bytes.
MAX_FILE_NAME = 240

_PLAIN = re.compile(rb"[A-Za-z0-9_]")


class ServerCode:
    """ClickHouse error codes this backend tells apart."""

    TABLE_ALREADY_EXISTS = 57
    UNKNOWN_TABLE = 60
    TABLE_IS_BEING_CREATED = 500  # DDLGuard of servers before 20.x


def server_code(ex: BaseException) -> int | None:
    """The server's error code of a ``clickhouse_driver`` exception, if it has one."""
    return getattr(ex, "code", None)


def check_identifier(name: str, what: str) -> None:
    """Refuse a name ClickHouse cannot hold as a table or column (before anything is created)."""
    if not name or any(ord(ch) < 32 for ch in name) or "\x7f" in name:
        raise ValueError(
            f"{what} {name!r} cannot be a ClickHouse identifier (empty or control characters)."
        )
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {name!r} is not valid Unicode text.") from None
    on_disk = sum(1 if _PLAIN.fullmatch(bytes([b])) else 3 for b in encoded)
    if on_disk > MAX_FILE_NAME:
        raise ValueError(
            f"{what} {name!r} is too long for ClickHouse: its file name would take {on_disk} "
            f"bytes, at most {MAX_FILE_NAME} fit (characters other than A-Z, a-z, 0-9 and _ "
            "take 3 bytes each)."
        )


def quote_identifier(name: str) -> str:
    """A ClickHouse identifier in backticks, backslash-escaped; control characters refused."""
    if not name or any(ord(ch) < 32 for ch in name) or len(name) > MAX_FILE_NAME:
        raise ValueError(
            f"{name!r} cannot be a ClickHouse identifier (empty, too long or control characters)."
        )
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_string(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def table_exists(client, name: str) -> bool:
    """Whether the client's current database has a table ``name`` (asks, never creates)."""
    return bool(client.execute(f"EXISTS TABLE {quote_identifier(name)}")[0][0])


def query_system_tables(client, query: str, attempts: int = 20) -> list[tuple]:
    """A query on ``system.tables``, retried when a table is dropped while the server lists
    the tables (ClickHouse 18.16 then fails the whole query with "doesn't exist")."""
    for _ in range(attempts - 1):
        try:
            return client.execute(query)
        except Exception as ex:
            if server_code(ex) != ServerCode.UNKNOWN_TABLE:
                raise
    return client.execute(query)


def tables_named(client, pattern: re.Pattern[str], prefix: str) -> list[str]:
    """Tables of the current database whose name starts with ``prefix`` and fully matches."""
    rows = query_system_tables(
        client,
        "SELECT name FROM system.tables WHERE database = currentDatabase() "
        f"AND startsWith(name, {quote_string(prefix)})",
    )
    return [name for (name,) in rows if pattern.fullmatch(name)]
