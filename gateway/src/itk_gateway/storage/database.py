"""The job database behind one small interface, on SQLite (embedded, one replica) or PostgreSQL.

The store writes its SQL once, with `?` placeholders and the few dialect differences taken from
the backend (`now_sql`, `skip_locked`, `float_type`); each backend runs it in short transactions.

SQLite: one connection in WAL mode serialised by a lock; a transaction is `BEGIN IMMEDIATE`, so
writers queue instead of failing, and readers never block. It is only for a single gateway, and
a second gateway process opening the same file (several replicas on a shared volume by mistake)
is refused at start: it would take over the first one's jobs.

PostgreSQL: a psycopg 3 connection pool shared by the gateway's threads. A transaction that
loses its connection (the server restarted, a network blip) is retried on a fresh connection for
up to `retry_sec`, so a short outage delays the gateway instead of failing its jobs.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
Row = dict[str, Any]


class Transaction(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement; the rows it returns (SELECT or RETURNING), else []."""

    @property
    def rowcount(self) -> int:
        """Rows changed by the last statement."""


class Database(Protocol):
    #: An SQL expression for the database's clock in Unix seconds (leases use it, so replicas
    #: with drifting clocks still agree on when a lease ends).
    now_sql: str
    #: Appended to a SELECT that claims rows, so concurrent claimers skip each other's rows.
    skip_locked: str
    float_type: str
    #: A statement that serialises the transactions passing the same text key until they end
    #: ("" where transactions already run one at a time, as SQLite's BEGIN IMMEDIATE does).
    key_lock_sql: str
    #: True when only one gateway process may use the database (SQLite).
    single_replica: bool
    name: str

    def run(self, work: Callable[[Transaction], T]) -> T:
        """Run `work` in one transaction (committed when it returns, rolled back when it raises)."""

    def close(self) -> None: ...


class _SqliteTransaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._rowcount = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self._connection.execute(sql, tuple(params))
        rows = [dict(row) for row in cursor.fetchall()] if cursor.description else []
        self._rowcount = cursor.rowcount
        return rows

    @property
    def rowcount(self) -> int:
        return self._rowcount


class SqliteDatabase:
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"
    skip_locked = ""  # BEGIN IMMEDIATE already makes claims one at a time
    key_lock_sql = ""  # and every other transaction too
    float_type = "REAL"
    single_replica = True

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.name = f"SQLite {path}"
        self._owner_lock = _exclusive_lock(path.with_name(path.name + ".lock"))
        self._connection = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._connection.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA foreign_keys=ON")
            self._connection.execute("PRAGMA synchronous=NORMAL")

    def run(self, work: Callable[[Transaction], T]) -> T:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(_SqliteTransaction(self._connection))
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")
            return result

    def close(self) -> None:
        with self._lock:
            self._connection.close()
        self._owner_lock.close()


class DatabaseInUseError(RuntimeError):
    """Another gateway process has the SQLite database open."""


def _exclusive_lock(path: Path) -> Any:
    """Hold an exclusive lock on `path` while the returned file stays open."""
    import fcntl

    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise DatabaseInUseError(
            f"another gateway uses {path.with_suffix('')}; SQLite is for one replica, several replicas "
            "need DATABASE_URL (PostgreSQL)"
        ) from exc
    return handle


class _PostgresTransaction:
    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._rowcount = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        # The store writes `?`; psycopg wants `%s` (and `%` itself doubled, which no query uses).
        cursor = self._connection.execute(sql.replace("?", "%s"), tuple(params))
        rows = list(cursor.fetchall()) if cursor.description else []
        self._rowcount = cursor.rowcount
        return rows

    @property
    def rowcount(self) -> int:
        return self._rowcount


class PostgresDatabase:
    now_sql = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    key_lock_sql = "SELECT pg_advisory_xact_lock(hashtext(?))"
    float_type = "DOUBLE PRECISION"
    single_replica = False

    def __init__(self, url: str, pool_size: int = 20, retry_sec: float = 15.0,
                 connect_timeout_sec: float = 5.0) -> None:
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        self._errors: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)
        self.name = f"PostgreSQL {_redacted(url)}"
        self.retry_sec = retry_sec
        self._pool = ConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, name="itk-gateway",
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": max(1, int(connect_timeout_sec))},
            check=ConnectionPool.check_connection,
        )
        # Does not wait for a connection: the first transaction does, so a database that is
        # down at start delays the gateway (see wait_until_reachable) instead of crashing it.
        self._pool.open(wait=False)

    def run(self, work: Callable[[Transaction], T]) -> T:
        from psycopg_pool import PoolTimeout

        deadline = time.monotonic() + self.retry_sec
        delay = 0.1
        while True:
            wait = max(0.5, deadline - time.monotonic())
            try:
                with self._pool.connection(timeout=wait) as connection, connection.transaction():
                    return work(_PostgresTransaction(connection))
            except (*self._errors, PoolTimeout) as exc:
                if time.monotonic() + delay > deadline:
                    raise DatabaseUnavailableError(f"{self.name} unreachable: {exc}") from exc
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning("database unreachable (%s); retrying", first_line)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        self._pool.close()


class DatabaseUnavailableError(RuntimeError):
    """The database could not be reached within the retry time."""


def _redacted(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def open_database(url: str, sqlite_path: Path, pool_size: int = 20) -> Database:
    """PostgreSQL for a `postgresql://` (or `postgres://`) URL, else SQLite at `sqlite_path`."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url, pool_size=pool_size)
    return SqliteDatabase(sqlite_path)


def wait_until_reachable(database: Database, timeout: float, ping: Callable[[Transaction], Any]) -> None:
    """Retry `ping` until the database answers; raise DatabaseUnavailableError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            database.run(ping)
            return
        except DatabaseUnavailableError:
            if time.monotonic() > deadline:
                raise
            log.warning("waiting for %s", database.name)


def iter_batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
