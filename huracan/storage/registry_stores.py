"""The two adapters of :class:`~huracan.storage.model_registry.ModelRegistryStore`.

* :class:`FileModelRegistryStore` — one JSON file per version under ``<root>/<coin>/v<N>.json``.
  A registration writes a temporary file, fsyncs it and hard-links it into place
  (``os.link`` fails if the name exists, so of racing writers — threads or processes — exactly
  one wins and readers never see a partial file). A status change takes an exclusive ``flock``
  on ``<root>/<coin>/.lock`` and replaces the file (tmp + fsync + ``os.replace``). POSIX local
  filesystems only (hard links and ``flock``).
* :class:`PostgresModelRegistryStore` — psycopg 3 with a ``psycopg_pool.ConnectionPool``. On
  first use (or :meth:`~PostgresModelRegistryStore.open`) it connects once, applies the numbered
  SQL files of ``huracan/storage/migrations`` that are not yet in ``<schema>.schema_migrations``
  — in one transaction, under a PostgreSQL advisory lock, so processes starting together do not
  race — and then opens the pool. ``UNIQUE (coin, version)`` turns a second registration into
  :class:`~huracan.storage.errors.ModelAlreadyRegistered`.

The DSN is kept in a ``SecretStr``; reprs, errors and log lines show it through
:func:`redact_dsn`, and driver errors are re-raised as registry errors with the password
scrubbed and without the original exception chained.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, LiteralString, Self, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import SecretStr

from huracan.storage.errors import (
    InvalidModelMetadata,
    MigrationError,
    ModelAlreadyRegistered,
    ModelNotFound,
    RegistryClosed,
    RegistryConfigError,
    RegistryCorrupted,
    RegistryError,
    RegistryUnavailable,
)
from huracan.storage.model_metadata import (
    COIN_PATTERN,
    ModelMetadata,
    ModelStatus,
    check_status_transition,
)

log = logging.getLogger("huracan.storage.registry")

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------------------------

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@\s]*@", re.IGNORECASE)
_KV_PASSWORD = re.compile(
    r"(?P<head>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE
)
REDACTED = "***"


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = re.sub(
                r"(?<![A-Za-z0-9_])" + re.escape(secret) + r"(?![A-Za-z0-9_])", REDACTED, text
            )
    return text


def _passwords_of(dsn: str) -> tuple[str, ...]:
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        return ()
    return (str(password),) if password else ()


def redact_dsn(text: str, dsn: str | None = None) -> str:
    """``text`` with every password replaced by ``***``.

    Removes ``scheme://user:password@`` and ``password=…`` forms and, when ``dsn`` is given,
    every stand-alone occurrence of that DSN's password (so a driver message, or a user name
    that equals the password, cannot leak it). ``redact_dsn(dsn, dsn)`` is a DSN safe to print.
    """
    out = _URL_PASSWORD.sub(rf"\g<head>:{REDACTED}@", text)
    out = _KV_PASSWORD.sub(rf"\g<head>{REDACTED}", out)
    if dsn:
        out = _scrub(out, _passwords_of(dsn))
    return out


# ---------------------------------------------------------------------------------------------
# Records <-> metadata
# ---------------------------------------------------------------------------------------------

_RECORD_FORMAT = 1


def _to_record(m: ModelMetadata) -> dict[str, Any]:
    return {
        "format": _RECORD_FORMAT,
        "coin": m.coin,
        "version": m.version,
        "sharpe_ratio": m.sharpe_ratio,
        "win_rate": m.win_rate,
        "regime": m.regime,
        "performance_metrics": dict(m.performance_metrics),
        "model_path": m.model_path,
        "sha256": m.sha256,
        "status": m.status.value,
        "created_at": m.created_at.isoformat(),
        "updated_at": m.updated_at.isoformat(),
    }


def _from_record(record: dict[str, Any], where: str) -> ModelMetadata:
    try:
        if record.get("format") != _RECORD_FORMAT:
            raise ValueError(f"unknown record format {record.get('format')!r}")
        return ModelMetadata(
            coin=record["coin"],
            version=record["version"],
            sharpe_ratio=record["sharpe_ratio"],
            win_rate=record["win_rate"],
            regime=record["regime"],
            performance_metrics=record["performance_metrics"],
            model_path=record["model_path"],
            sha256=record["sha256"],
            status=ModelStatus(record["status"]),
            created_at=datetime.fromisoformat(record["created_at"]),
            updated_at=datetime.fromisoformat(record["updated_at"]),
        )
    except (KeyError, TypeError, ValueError, InvalidModelMetadata) as exc:
        raise RegistryCorrupted(f"corrupt registry record {where}: {exc}") from None


def _rank_key(m: ModelMetadata) -> tuple[float, int, str]:
    return (-m.sharpe_ratio, -m.version, m.coin)


# ---------------------------------------------------------------------------------------------
# File store
# ---------------------------------------------------------------------------------------------

_VERSION_FILE = re.compile(r"^v([1-9][0-9]{0,18})\.json$")


class FileModelRegistryStore:
    """Registry records as JSON files under ``root`` (see the module docstring for the layout).

    ``fsync=False`` skips the fsyncs (tests and benchmarks on throw-away directories only).
    Nothing is created until the first write.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self._fsync = fsync
        self._closed = False
        # the file is always read; parsing is skipped when its bytes are the ones parsed before
        self._parsed: dict[Path, tuple[bytes, ModelMetadata]] = {}

    def __repr__(self) -> str:
        return f"FileModelRegistryStore(root={str(self.root)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Create ``root`` if needed; raises ``RegistryUnavailable`` if it cannot be written."""
        self._check_open()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryUnavailable(
                f"cannot create registry directory {self.root}: {exc.strerror or exc}"
            ) from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise RegistryUnavailable(f"registry directory {self.root} is not writable")

    def close(self) -> None:
        self._closed = True

    # -- port --------------------------------------------------------------------------------

    def add(self, metadata: ModelMetadata) -> None:
        self._check_open()
        directory = self.root / metadata.coin
        final = directory / f"v{metadata.version}.json"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = self._write_tmp(directory, _to_record(metadata))
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise ModelAlreadyRegistered(metadata.coin, metadata.version) from None
            finally:
                tmp.unlink(missing_ok=True)
            self._sync_dir(directory)
        except OSError as exc:
            raise RegistryUnavailable(
                f"cannot write registry record {final}: {exc.strerror or exc}"
            ) from None

    def get(self, coin: str, version: int | None) -> ModelMetadata | None:
        self._check_open()
        if version is None:
            versions = self._versions(coin)
            if not versions:
                return None
            version = versions[-1]
        return self._read(self.root / coin / f"v{version}.json")

    def list_active(
        self, coin: str | None, regime: str | None, limit: int | None
    ) -> list[ModelMetadata]:
        self._check_open()
        active = [
            m
            for m in self._all(coin)
            if m.status is ModelStatus.ACTIVE and (regime is None or m.regime == regime)
        ]
        active.sort(key=_rank_key)
        return active if limit is None else active[:limit]

    def list_models(self, coin: str | None) -> list[ModelMetadata]:
        self._check_open()
        return sorted(self._all(coin), key=lambda m: (m.coin, m.version))

    def set_status(
        self, coin: str, version: int, status: ModelStatus, updated_at: datetime
    ) -> ModelMetadata:
        self._check_open()
        directory = self.root / coin
        path = directory / f"v{version}.json"
        if not path.exists():
            raise ModelNotFound(coin, version)
        try:
            with self._locked(directory):
                current = self._read(path)
                if current is None:
                    raise ModelNotFound(coin, version)
                check_status_transition(coin, version, current.status, status)
                if current.status is status:
                    return current
                updated = ModelMetadata(
                    **{
                        **{n: getattr(current, n) for n in ModelMetadata.__dataclass_fields__},
                        "status": status,
                        "updated_at": updated_at,
                    }
                )
                tmp = self._write_tmp(directory, _to_record(updated))
                try:
                    os.replace(tmp, path)
                finally:
                    tmp.unlink(missing_ok=True)
                self._sync_dir(directory)
                return updated
        except OSError as exc:
            raise RegistryUnavailable(
                f"cannot update registry record {path}: {exc.strerror or exc}"
            ) from None

    # -- helpers -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosed(f"{self!r} is closed")

    def _write_tmp(self, directory: Path, record: dict[str, Any]) -> Path:
        data = json.dumps(record, allow_nan=False, sort_keys=True, indent=1).encode()
        tmp = directory / f".tmp-{uuid.uuid4().hex}.json"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self._fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return tmp

    def _sync_dir(self, directory: Path) -> None:
        if not self._fsync:
            return
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self, directory: Path) -> Iterator[None]:
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _read(self, path: Path) -> ModelMetadata | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RegistryUnavailable(
                f"cannot read registry record {path}: {exc.strerror or exc}"
            ) from None
        cached = self._parsed.get(path)
        if cached is not None and cached[0] == raw:
            return cached[1]
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise RegistryCorrupted(f"corrupt registry record {path}: {exc}") from None
        if not isinstance(record, dict):
            raise RegistryCorrupted(f"corrupt registry record {path}: not a JSON object")
        metadata = _from_record(record, str(path))
        if path.parent.name != metadata.coin or path.name != f"v{metadata.version}.json":
            raise RegistryCorrupted(
                f"registry record {path} holds {metadata.coin!r} version {metadata.version}"
            )
        self._parsed[path] = (raw, metadata)
        return metadata

    def _versions(self, coin: str) -> list[int]:
        try:
            names = os.listdir(self.root / coin)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(int(m.group(1)) for n in names if (m := _VERSION_FILE.match(n)))

    def _coins(self) -> list[str]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries if e.is_dir() and COIN_PATTERN.match(e.name))

    def _all(self, coin: str | None) -> list[ModelMetadata]:
        out: list[ModelMetadata] = []
        for c in [coin] if coin is not None else self._coins():
            for v in self._versions(c):
                m = self._read(self.root / c / f"v{v}.json")
                if m is not None:
                    out.append(m)
        return out


# ---------------------------------------------------------------------------------------------
# PostgreSQL store
# ---------------------------------------------------------------------------------------------

DEFAULT_SCHEMA = "huracan_registry"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SEARCH_PATH_OPTION = re.compile(r"(?:^|\s)-c\s*search_path\s*=\s*([^\s,]+)")
#: first key of the advisory lock that serialises migrations (the second is the schema's hash)
_MIGRATION_LOCK_CLASS = 0x48524347  # "HRCG"
_MIGRATION_FILE = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")

_COLUMNS = (
    "coin",
    "version",
    "sharpe_ratio",
    "win_rate",
    "regime",
    "performance_metrics",
    "model_path",
    "sha256",
    "status",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file of ``huracan/storage/migrations``."""

    version: int
    name: str
    sql: bytes

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql).hexdigest()


def load_migrations() -> list[Migration]:
    """The packaged migrations, in version order. Raises ``MigrationError`` on a bad name."""
    folder = resources.files("huracan.storage").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _MIGRATION_FILE.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_bytes()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a number: {versions}")
    return found


def _schema_from_dsn(params: dict[str, Any]) -> str | None:
    match = _SEARCH_PATH_OPTION.search(str(params.get("options") or ""))
    return match.group(1).strip("\"'") if match else None


class PostgresModelRegistryStore:
    """Registry records in PostgreSQL table ``<schema>.models``.

    ``schema`` defaults to the first entry of ``search_path`` in the DSN's ``options`` (e.g.
    ``options=-c search_path=my_schema``), else ``huracan_registry``; it is created if missing.
    The constructor only parses the DSN (``RegistryConfigError`` if libpq rejects it); the first
    call — or :meth:`open` — connects, migrates and opens a pool of ``min_size``..``max_size``
    connections. ``connect_timeout`` bounds a connection attempt, ``pool_timeout`` the wait for
    a free pooled connection. Every unreachable/timeout/authentication failure becomes
    ``RegistryUnavailable`` naming host, port, database and user, never the password.
    """

    def __init__(
        self,
        dsn: str | SecretStr,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        pool_timeout: float = 30.0,
        application_name: str = "huracan-model-registry",
    ) -> None:
        raw = dsn.get_secret_value() if isinstance(dsn, SecretStr) else dsn
        self._dsn = SecretStr(raw)
        try:
            params = conninfo_to_dict(raw)
        except psycopg.Error:
            raise RegistryConfigError(
                "metadata_db is not a valid PostgreSQL DSN (libpq cannot parse it; the value is "
                "not shown because it may hold a password)"
            ) from None
        self.schema = schema or _schema_from_dsn(params) or DEFAULT_SCHEMA
        if not _SCHEMA_NAME.match(self.schema):
            raise RegistryConfigError(
                f"schema must be a lowercase SQL identifier, got {self.schema!r}"
            )
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise RegistryConfigError(
                f"pool sizes must satisfy 0 <= min_size <= max_size >= 1, got {min_size}, "
                f"{max_size}"
            )
        if not (connect_timeout > 0 and pool_timeout > 0):
            raise RegistryConfigError("connect_timeout and pool_timeout must be positive")
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._application_name = application_name
        self._target = self._scrubbed(
            f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"
            f"/{params.get('dbname') or '?'} as user {params.get('user') or '?'}"
        )
        self._table = sql.Identifier(self.schema, "models")
        self._queries = self._compose_queries()
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.applied_migrations: list[str] = []

    # -- presentation ------------------------------------------------------------------------

    @property
    def redacted_dsn(self) -> str:
        """The DSN with its password replaced by ``***``."""
        return redact_dsn(self._dsn.get_secret_value(), self._dsn.get_secret_value())

    def __repr__(self) -> str:
        return (
            f"PostgresModelRegistryStore(dsn={self.redacted_dsn!r}, schema={self.schema!r}, "
            f"{'closed' if self._closed else 'open' if self._pool else 'not connected'})"
        )

    def _scrubbed(self, text: str) -> str:
        return redact_dsn(text, self._dsn.get_secret_value())

    def _unavailable(self, doing: str, exc: BaseException) -> RegistryUnavailable:
        detail = self._scrubbed(" ".join(str(exc).split()))
        return RegistryUnavailable(
            f"PostgreSQL at {self._target} unavailable while {doing}: "
            f"{type(exc).__name__}: {detail}"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Connect, apply pending migrations and open the pool; idempotent.

        Steps:
        1. one direct connection (``connect_timeout``) — fails fast with a clear error;
        2. :meth:`migrate` on it (advisory-locked, one transaction);
        3. open the pool and wait for ``min_size`` connections.
        """
        self._ensure_pool()

    def close(self) -> None:
        """Close the pool; idempotent. Later calls raise ``RegistryClosed``."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _ensure_pool(self) -> ConnectionPool:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._closed:
                raise RegistryClosed(f"{self!r} is closed")
            if self._pool is not None:
                return self._pool
            with self._connect() as conn:
                self.applied_migrations = self.migrate(conn)
            pool = ConnectionPool(
                self._dsn.get_secret_value(),
                min_size=self._min_size,
                max_size=self._max_size,
                open=False,
                timeout=self._pool_timeout,
                # a connection the server dropped (restart, idle kill) is replaced, not returned
                check=ConnectionPool.check_connection,
                name=f"registry-{self.schema}",
                # autocommit: a read or a single INSERT costs one round trip; set_status opens
                # its own transaction
                kwargs={
                    "autocommit": True,
                    "connect_timeout": self._libpq_timeout(),
                    "application_name": self._application_name,
                },
            )
            try:
                pool.open(wait=self._min_size > 0, timeout=self._connect_timeout + 5)
            except PoolTimeout as exc:
                pool.close()
                raise self._unavailable("opening the connection pool", exc) from None
            self._pool = pool
            log.info(
                "model registry on %s (schema %s) ready; migrations applied now: %s",
                self.redacted_dsn,
                self.schema,
                ", ".join(self.applied_migrations) or "none",
            )
            return pool

    def _libpq_timeout(self) -> int:
        return max(2, math.ceil(self._connect_timeout))  # libpq: whole seconds, minimum 2

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self._dsn.get_secret_value(),
                connect_timeout=self._libpq_timeout(),
                application_name=self._application_name,
            )
        except psycopg.Error as exc:
            raise self._unavailable("connecting", exc) from None

    def migrate(self, conn: psycopg.Connection[Any]) -> list[str]:
        """Apply the pending migrations on ``conn``; return the names applied now.

        Steps, all in one transaction:
        1. take ``pg_advisory_xact_lock(HRCG, hashtext(schema))`` — a second process starting at
           the same moment waits here, then sees the work done;
        2. create the schema and ``schema_migrations`` if missing;
        3. for each packaged migration: skip it if recorded (``MigrationError`` if its
           checksum differs — an applied file was edited), else run it with ``search_path`` set
           to the schema and record it;
        4. commit (which releases the lock).
        """
        migrations = load_migrations()
        schema = sql.Identifier(self.schema)
        applied_now: list[str] = []
        try:
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s::int4, hashtext(%s))",
                    (_MIGRATION_LOCK_CLASS, self.schema),
                )
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} ("
                        " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                        " checksum TEXT NOT NULL,"
                        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                    ).format(sql.Identifier(self.schema, "schema_migrations"))
                )
                rows = conn.execute(
                    sql.SQL("SELECT version, checksum FROM {}").format(
                        sql.Identifier(self.schema, "schema_migrations")
                    )
                ).fetchall()
                recorded = {int(v): str(c) for v, c in rows}
                for m in migrations:
                    if m.version in recorded:
                        if recorded[m.version] != m.checksum:
                            raise MigrationError(
                                f"migration {m.version:03d}_{m.name}.sql changed after it was "
                                f"applied to schema {self.schema!r}; add a new migration instead"
                            )
                        continue
                    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
                    conn.execute(m.sql)
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (version, name, checksum) VALUES (%s, %s, %s)"
                        ).format(sql.Identifier(self.schema, "schema_migrations")),
                        (m.version, m.name, m.checksum),
                    )
                    applied_now.append(f"{m.version:03d}_{m.name}")
        except psycopg.OperationalError as exc:
            raise self._unavailable("applying migrations", exc) from None
        except psycopg.Error as exc:
            raise MigrationError(
                f"applying migrations to schema {self.schema!r} failed: "
                f"{type(exc).__name__}: {self._scrubbed(str(exc))}"
            ) from None
        return applied_now

    def _run(self, doing: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        pool = self._ensure_pool()
        try:
            with pool.connection() as conn:
                return fn(conn)
        except RegistryError:
            raise
        except PoolTimeout as exc:
            raise self._unavailable(doing, exc) from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._unavailable(doing, exc) from None
        except psycopg.Error as exc:
            raise RegistryError(
                f"PostgreSQL error while {doing} in schema {self.schema!r}: "
                f"{type(exc).__name__}: {self._scrubbed(str(exc))}"
            ) from None

    def _compose_queries(self) -> dict[str, bytes]:
        """Every statement the store runs, composed once (schema-qualified) as bytes."""
        cols = sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))

        def select(where: LiteralString, tail: LiteralString = "") -> bytes:
            return (
                sql.SQL("SELECT {cols} FROM {table} WHERE {where} {tail}")
                .format(cols=cols, table=self._table, where=sql.SQL(where), tail=sql.SQL(tail))
                .as_bytes(None)
            )

        return {
            "insert": sql.SQL("INSERT INTO {table} ({cols}) VALUES ({values})")
            .format(
                table=self._table,
                cols=cols,
                values=sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)),
            )
            .as_bytes(None),
            "get": select("coin = %s AND version = %s"),
            "latest": select("coin = %s", "ORDER BY version DESC LIMIT 1"),
            "lock": select("coin = %s AND version = %s", "FOR UPDATE"),
            "active": select(
                "status = 'active' AND (%(coin)s::text IS NULL OR coin = %(coin)s)"
                " AND (%(regime)s::text IS NULL OR regime = %(regime)s)",
                "ORDER BY sharpe_ratio DESC, version DESC, coin ASC LIMIT %(limit)s",
            ),
            "all": select("(%(coin)s::text IS NULL OR coin = %(coin)s)", "ORDER BY coin, version"),
            "update": sql.SQL(
                "UPDATE {table} SET status = %s, updated_at = %s"
                " WHERE coin = %s AND version = %s RETURNING {cols}"
            )
            .format(table=self._table, cols=cols)
            .as_bytes(None),
        }

    @staticmethod
    def _row(row: dict[str, Any]) -> ModelMetadata:
        try:
            return ModelMetadata(
                coin=row["coin"],
                version=int(row["version"]),
                sharpe_ratio=row["sharpe_ratio"],
                win_rate=row["win_rate"],
                regime=row["regime"],
                performance_metrics=row["performance_metrics"],
                model_path=row["model_path"],
                sha256=row["sha256"],
                status=ModelStatus(row["status"]),
                created_at=row["created_at"],
                updated_at=row["updated_at"],
            )
        except (KeyError, TypeError, ValueError, InvalidModelMetadata) as exc:
            raise RegistryCorrupted(
                f"corrupt registry row {row.get('coin')!r} v{row.get('version')}: {exc}"
            ) from None

    # -- port --------------------------------------------------------------------------------

    def add(self, metadata: ModelMetadata) -> None:
        params = (
            metadata.coin,
            metadata.version,
            metadata.sharpe_ratio,
            metadata.win_rate,
            metadata.regime,
            Jsonb(dict(metadata.performance_metrics)),
            metadata.model_path,
            metadata.sha256,
            metadata.status.value,
            metadata.created_at,
            metadata.updated_at,
        )

        def insert(conn: psycopg.Connection[Any]) -> None:
            try:
                conn.execute(self._queries["insert"], params)
            except psycopg.errors.UniqueViolation:
                raise ModelAlreadyRegistered(metadata.coin, metadata.version) from None

        self._run("registering a model", insert)

    def get(self, coin: str, version: int | None) -> ModelMetadata | None:
        params: tuple[str] | tuple[str, int]
        if version is None:
            query, params = self._queries["latest"], (coin,)
        else:
            query, params = self._queries["get"], (coin, version)

        def fetch(conn: psycopg.Connection[Any]) -> ModelMetadata | None:
            row = conn.cursor(row_factory=dict_row).execute(query, params).fetchone()
            return None if row is None else self._row(row)

        return self._run("reading a model", fetch)

    def list_active(
        self, coin: str | None, regime: str | None, limit: int | None
    ) -> list[ModelMetadata]:
        params = {"coin": coin, "regime": regime, "limit": limit}

        def fetch(conn: psycopg.Connection[Any]) -> list[ModelMetadata]:
            cursor = conn.cursor(row_factory=dict_row)
            return [self._row(r) for r in cursor.execute(self._queries["active"], params)]

        return self._run("listing active models", fetch)

    def list_models(self, coin: str | None) -> list[ModelMetadata]:
        def fetch(conn: psycopg.Connection[Any]) -> list[ModelMetadata]:
            cursor = conn.cursor(row_factory=dict_row)
            return [self._row(r) for r in cursor.execute(self._queries["all"], {"coin": coin})]

        return self._run("listing models", fetch)

    def set_status(
        self, coin: str, version: int, status: ModelStatus, updated_at: datetime
    ) -> ModelMetadata:
        def change(conn: psycopg.Connection[Any]) -> ModelMetadata:
            cursor = conn.cursor(row_factory=dict_row)
            with conn.transaction():
                row = cursor.execute(self._queries["lock"], (coin, version)).fetchone()
                if row is None:
                    raise ModelNotFound(coin, version)
                current = self._row(row)
                check_status_transition(coin, version, current.status, status)
                if current.status is status:
                    return current
                params = (status.value, updated_at, coin, version)
                row = cursor.execute(self._queries["update"], params).fetchone()
                assert row is not None  # locked by FOR UPDATE above
                return self._row(row)

        return self._run("changing a model's status", change)


__all__ = [
    "DEFAULT_SCHEMA",
    "FileModelRegistryStore",
    "Migration",
    "PostgresModelRegistryStore",
    "load_migrations",
    "redact_dsn",
]
