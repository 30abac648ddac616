"""One writer per ClickHouse chain: a lease held as a table.

ClickHouse 18.16 has no transactions, but creating a table is atomic: of several
``CREATE TABLE`` of one name (without ``IF NOT EXISTS``) exactly one succeeds. A writer
takes a chain by creating ``__mcb_writer_<chain table>`` holding its random token and a
heartbeat (server time); it drops the table on close. Before an insert the writer checks
the table still holds its token and renews the heartbeat, every ``seconds / 4``; within that
long of its last renewal no other writer can have taken the lease, and the check (a query
costing a round trip) is left out.

A lease whose heartbeat is older than ``seconds`` (its writer crashed, or stopped writing
for that long) may be taken over: ``RENAME TABLE`` is atomic too, so of several takers
exactly one moves the stale lease aside and creates its own.
"""

from __future__ import annotations

import time
import uuid

from ..errors import ChainLockedError
from .clickhouse_sql import (
    ServerCode,
    query_system_tables,
    quote_identifier,
    quote_string,
    server_code,
)

__all__ = ["LEASE_PREFIX", "STALE_PREFIX", "ChainLease"]

#: Without a clock that counts sleep, every insert checks the lease.
_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def _clock() -> float:
    """Seconds of a clock that runs on while the machine sleeps (Linux's ``CLOCK_BOOTTIME``;
    ``CLOCK_MONOTONIC`` stops): a lease's age by server time is never far ahead of it."""
    return time.clock_gettime(_BOOTTIME) if _BOOTTIME is not None else time.monotonic()


LEASE_PREFIX = "__mcb_writer_"
#: Where a stale lease is moved (by the one taker whose RENAME succeeds) to be dropped.
STALE_PREFIX = "__mcb_stale_"


class ChainLease:
    """The right to append to one chain table, held by at most one handle at a time."""

    def __init__(self, client, chain_table: str, seconds: float) -> None:
        self._client = client
        self.name = LEASE_PREFIX + chain_table
        self._table = quote_identifier(self.name)
        self._chain_table = chain_table
        self._seconds = seconds
        self._token = uuid.uuid4().hex
        self.held = False
        self._renewed = 0.0

    def acquire(self) -> None:
        """Take the lease, or raise ``ChainLockedError`` when another writer holds it."""
        if self.held:
            return
        started = _clock()  # the heartbeat the new lease gets is at least this new
        if not self._create():
            age = self._age()
            stale = age is None or age >= self._seconds
            if not (stale and self._take_over() and self._create()):
                raise ChainLockedError(
                    f"Chain table '{self._chain_table}' has another writer (a lease renewed "
                    f"{'?' if age is None else int(age)} s ago). A chain takes one writer at a "
                    f"time: close the other handle, or wait {self._seconds:g} s after it "
                    "stopped writing."
                )
        self.held = True
        self._renewed = started

    def confirm(self) -> None:
        """Raise ``ChainLockedError`` unless this handle still holds the lease; renew it. Within
        ``seconds / 4`` of the last renewal (and over 2 s before the lease could go stale, as
        the server counts its age in whole seconds) the lease is surely held: no query."""
        started = _clock()
        if self._surely_held(started):
            return
        if self._holder() != self._token:
            self.held = False
            raise ChainLockedError(
                f"This handle lost its lease on chain table '{self._chain_table}' (it wrote "
                f"nothing for over {self._seconds:g} s and another writer took the chain); "
                "its unwritten draws were not stored."
            )
        if started - self._renewed > self._seconds / 4:
            self._client.execute(
                f"INSERT INTO {self._table} SELECT {quote_string(self._token)}, now()"
            )
            self._renewed = started

    def release(self) -> None:
        """Give the lease up (if this handle holds it), so that another handle may write."""
        if not self.held:
            return
        self.held = False
        if self._surely_held(_clock()) or self._holder() == self._token:
            self._client.execute(f"DROP TABLE IF EXISTS {self._table}")

    def _surely_held(self, now: float) -> bool:
        """Renewed so lately that no other writer can have taken the lease (over 2 s before it
        could go stale: the server counts its age in whole seconds)."""
        since = now - self._renewed
        return _BOOTTIME is not None and since < min(self._seconds / 4, self._seconds - 2)

    def _holder(self) -> str:
        try:
            return self._client.execute(f"SELECT any(token) FROM {self._table}")[0][0]
        except Exception as ex:
            if server_code(ex) != ServerCode.UNKNOWN_TABLE:
                raise
            return ""

    def _create(self) -> bool:
        try:
            self._client.execute(
                f"CREATE TABLE {self._table} (token String, renewed DateTime) ENGINE = Log"
            )
        except Exception as ex:
            if server_code(ex) in (
                ServerCode.TABLE_ALREADY_EXISTS,
                ServerCode.TABLE_IS_BEING_CREATED,
            ):
                return False
            raise
        self._client.execute(f"INSERT INTO {self._table} SELECT {quote_string(self._token)}, now()")
        return True

    def _age(self) -> float | None:
        """Seconds since the holder last renewed (by server time); None if the lease is gone."""
        try:
            rows = self._client.execute(
                f"SELECT count(), dateDiff('second', max(renewed), now()) FROM {self._table}"
            )
        except Exception as ex:
            if server_code(ex) == ServerCode.UNKNOWN_TABLE:
                return None
            raise
        count, age = rows[0]
        if not count:  # its creator stopped between CREATE and INSERT: age from the table
            rows = query_system_tables(
                self._client,
                "SELECT dateDiff('second', metadata_modification_time, now()) FROM system.tables "
                f"WHERE database = currentDatabase() AND name = {quote_string(self.name)}",
            )
            return float(rows[0][0]) if rows else None
        return float(age)

    def _take_over(self) -> bool:
        """Move a stale lease aside; only one of several takers succeeds. A lease found fresh
        once moved (another taker renewed it meanwhile) is put back, and the take-over fails."""
        moved = STALE_PREFIX + self._token
        try:
            self._client.execute(f"RENAME TABLE {self._table} TO {quote_identifier(moved)}")
        except Exception as ex:
            if server_code(ex) == ServerCode.UNKNOWN_TABLE:
                return True  # gone meanwhile: try to create it
            raise
        rows = self._client.execute(
            "SELECT dateDiff('second', max(renewed), now()), count() "
            f"FROM {quote_identifier(moved)}"
        )
        if rows[0][1] and rows[0][0] < self._seconds:
            self._client.execute(f"RENAME TABLE {quote_identifier(moved)} TO {self._table}")
            return False
        self._client.execute(f"DROP TABLE IF EXISTS {quote_identifier(moved)}")
        return True
