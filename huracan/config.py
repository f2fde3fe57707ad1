"""Configuration: frozen pydantic models for ``config/base.yaml`` plus environment overrides.

Precedence, lowest first:

1. the model defaults below (each one documented in ``config/base.yaml``);
2. the YAML file;
3. ``HURACAN__section__key`` environment variables (any depth, e.g.
   ``HURACAN__engine__risk__global_max_exposure_pct=150``), values parsed as YAML scalars;
4. the service variables the launchers and tests share: ``HURACAN_KAFKA_BOOTSTRAP``,
   ``HURACAN_SCHEMA_REGISTRY_URL``, ``HURACAN_REDIS_URL``, ``HURACAN_POSTGRES_DSN``.

Unknown keys are rejected, and every validation error names the dotted key
(``engine.risk.per_coin_max_exposure_pct``) in a :class:`ConfigError`. Secrets (the PostgreSQL
DSN, the Redis password, the Kafka SASL and SSL key passwords) are :class:`pydantic.SecretStr`
and never printed; :meth:`HuracanConfig.redacted` gives a dump safe to log.

The models are also read-only mappings, so the spec's ``RiskLimits(**config["engine"]["risk"])``
works as written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "HURACAN__"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "base.yaml"

DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_DSN = "postgresql://huracan:huracan@127.0.0.1:5432/huracan"


class ConfigError(ValueError):
    """The configuration is invalid; the message names every offending key."""


class _Section(BaseModel):
    """Frozen, extra-forbidding model that also reads like a mapping (``keys``/``[]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def keys(self) -> list[str]:
        return list(type(self).model_fields)

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in type(self).model_fields else default

    def __contains__(self, key: object) -> bool:
        return key in type(self).model_fields

    def items(self) -> Iterator[tuple[str, Any]]:
        for k in self.keys():
            yield k, getattr(self, k)


class MessageBusConfig(_Section):
    """The spec's ``engine.message_bus``: which adapter and how it reaches its server."""

    type: Literal["redis_streams", "memory", "kafka"] = "redis_streams"
    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)
    db: int = Field(0, ge=0)
    password: SecretStr | None = None
    stream_prefix: str = "huracan"
    #: approximate MAXLEN per stream (XADD MAXLEN ~); 0 disables trimming
    maxlen: int = Field(1_000_000, ge=0)
    #: entries pending longer than this are reclaimed from a dead consumer (XAUTOCLAIM)
    claim_idle_ms: int = Field(30_000, ge=1)
    #: an entry delivered more than this many times goes to the dead-letter stream
    max_deliveries: int = Field(5, ge=1)
    #: how long one read blocks waiting for entries
    block_ms: int = Field(1_000, ge=1)
    #: entries fetched per read
    batch_size: int = Field(100, ge=1)
    #: Kafka adapter only: bootstrap servers (defaults to kafka.bootstrap_servers)
    bootstrap_servers: str | None = None
    #: Kafka adapter only: partitions of each bus topic it creates on demand
    partitions: int = Field(12, ge=1)
    #: Kafka adapter only: replication factor of the bus topics it creates
    replication_factor: int = Field(1, ge=1)


class RiskConfig(_Section):
    """The spec's ``engine.risk``; the same fields as ``RiskLimits``."""

    global_max_exposure_pct: float = Field(200.0, gt=0)
    per_coin_max_exposure_pct: float = Field(40.0, gt=0)
    per_sector_max_exposure_pct: float = Field(60.0, gt=0)
    per_exchange_max_exposure_pct: float = Field(150.0, gt=0)
    soft_throttle_threshold_pct: float = Field(80.0, gt=0, le=100)
    max_concurrent_trades: int = Field(500, ge=1)
    max_active_trades: int = Field(100, ge=1)
    max_drawdown_pct: float = Field(10.0, gt=0, le=100)
    max_consecutive_errors: int = Field(5, ge=1)
    #: smallest size a risk-increasing request is approved at; a request or a throttle
    #: resize below it is BLOCKed below_min_size (docs/risk-and-costs.md)
    min_trade_usd: float = Field(10.0, gt=0)


class CostModelConfig(_Section):
    """The spec's ``engine.cost_model``."""

    update_interval_seconds: float = Field(60.0, gt=0)
    min_edge_after_cost_bps: float = 5.0
    default_maker_fee_bps: float = 2.0
    default_taker_fee_bps: float = 5.0
    #: quotes older than this make a symbol stale (should_trade refuses it)
    stale_after_seconds: float = Field(30.0, gt=0)
    #: funding is charged pro rata over this expected holding period, hours; None (the
    #: default) takes the exit rules' time limit, engine.exits.max_holding_seconds
    expected_holding_hours: float | None = Field(None, ge=0)
    #: hours per funding interval (funding_rate_bps is per interval)
    funding_interval_hours: float = Field(8.0, gt=0)


class ExitsConfig(_Section):
    """``engine.exits``: when an open trade is closed (``huracan.domain.execution.ExitRules``).

    Take-profit and stop-loss compare the move of the mid price since entry (net of the entry
    spread, which the cost check already charged) with these thresholds."""

    #: close when the mid has moved this far in the trade's favour, bps
    take_profit_bps: float = Field(30.0, gt=0)
    #: close when the mid has moved this far against the trade, bps
    stop_loss_bps: float = Field(20.0, gt=0)
    #: close once held this long (event time), seconds; also the funding holding period
    max_holding_seconds: float = Field(300.0, gt=0)
    #: close when a signal points the other way
    close_on_reversal: bool = True


class PaperExchangeConfig(_Section):
    """``engine.paper_exchange``: how the paper exchange fills (``PaperExchangeParams``).

    Fees come from the cost book (the coin's taker fee, ``engine.cost_model`` defaults until a
    fee update). Ticks carry no quoted size, so the depth at the touch is assumed:
    the first ``quoted_size_usd`` of an order fills at the touch, and each further
    ``quoted_size_usd`` moves the average fill ``impact_bps`` further away."""

    #: event time from decision to fill, ms
    latency_ms: float = Field(50.0, ge=0)
    #: notional assumed quoted at the best bid or ask, USD
    quoted_size_usd: float = Field(100_000.0, gt=0)
    #: average price impact per quoted size beyond the touch, bps
    impact_bps: float = Field(10.0, ge=0)


class ModelRegistryConfig(_Section):
    """The spec's ``engine.model_registry``; ``metadata_db`` empty or absent means file storage."""

    storage_path: str = "data/models"
    metadata_db: SecretStr | None = None
    #: how often the engine re-reads the active models (huracan.models.RegistryModels)
    refresh_seconds: float = Field(30.0, gt=0)


class UniverseCoinConfig(_Section):
    """One coin of a configured universe."""

    symbol: str = Field(min_length=1)
    sector: str = Field(min_length=1)
    exchange: str = Field(min_length=1)


class UniverseConfig(_Section):
    """``engine.universe``: the coins the engine trades, with sector and home exchange.

    Leave both empty for today's table (the first ``engine.max_coins`` coins of
    :mod:`huracan.domain.universe`); list the coins inline (``coins``) or name a YAML or CSV
    file (``file``, columns ``symbol,sector,exchange``; relative to the working directory), not
    both. A tick or cost update of a coin outside the universe is dead-lettered
    (``unknown_coin``)."""

    file: str | None = None
    coins: tuple[UniverseCoinConfig, ...] = ()

    @model_validator(mode="after")
    def _one_source(self) -> UniverseConfig:
        if self.file and self.coins:
            raise ValueError("set engine.universe.file or engine.universe.coins, not both")
        return self


class EngineConfig(_Section):
    """The spec's ``engine:`` section."""

    max_coins: int = Field(400, ge=1)
    max_concurrent_trades: int = Field(500, ge=1)
    active_coins: int = Field(20, ge=1)
    max_active_trades: int = Field(100, ge=1)
    coins_per_event_loop: int = Field(50, ge=1)
    equity_usd: float = Field(1_000_000.0, gt=0)
    message_bus: MessageBusConfig = MessageBusConfig()
    risk: RiskConfig = RiskConfig()
    cost_model: CostModelConfig = CostModelConfig()
    exits: ExitsConfig = ExitsConfig()
    paper_exchange: PaperExchangeConfig = PaperExchangeConfig()
    model_registry: ModelRegistryConfig = ModelRegistryConfig()
    universe: UniverseConfig = UniverseConfig()

    @field_validator("active_coins")
    @classmethod
    def _active_within_max(cls, v: int, info: Any) -> int:
        max_coins = info.data.get("max_coins", 400)
        if v > max_coins:
            raise ValueError(f"active_coins ({v}) exceeds max_coins ({max_coins})")
        return v


class TopicPartitionsConfig(_Section):
    """Partition counts per topic of the catalog (``huracan.streams.topics``)."""

    market_data: int = Field(12, ge=1)
    features: int = Field(12, ge=1)
    signals: int = Field(12, ge=1)
    cost_updates: int = Field(12, ge=1)
    trade_requests: int = Field(1, ge=1)
    risk_decisions: int = Field(1, ge=1)
    executions: int = Field(12, ge=1)
    control: int = Field(1, ge=1)
    dead_letter: int = Field(3, ge=1)


KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecurityConfig(_Section):
    """``kafka.security``: how every Kafka client authenticates and encrypts
    (:mod:`huracan.streams.clients` passes it to each one). The defaults are the local
    plaintext broker; a real cluster sets ``protocol`` and the SASL and/or SSL keys."""

    #: PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL (librdkafka's security.protocol)
    protocol: KafkaSecurityProtocol = "PLAINTEXT"
    #: PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512; required with a SASL protocol
    sasl_mechanism: KafkaSaslMechanism | None = None
    sasl_username: str | None = None
    #: never printed (``huracan config show`` shows ``**********``)
    sasl_password: SecretStr | None = None
    #: PEM file of the CA that signed the brokers' certificates (None: the system's CAs)
    ssl_ca_location: str | None = None
    #: PEM client certificate and key, for clusters that authenticate clients by TLS
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    #: password of an encrypted ``ssl_key_location``; never printed
    ssl_key_password: SecretStr | None = None

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecurityConfig:
        if self.protocol.startswith("SASL_"):
            missing = [k for k in ("sasl_mechanism", "sasl_username") if not getattr(self, k)]
            if self.sasl_password is None or not self.sasl_password.get_secret_value():
                missing.append("sasl_password")
            if missing:
                raise ValueError(f"protocol {self.protocol} needs {', '.join(missing)}")
        if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
            raise ValueError("ssl_certificate_location and ssl_key_location go together")
        return self


class KafkaConfig(_Section):
    bootstrap_servers: str = DEFAULT_KAFKA_BOOTSTRAP
    #: prefix of every client.id huracan sets (``<client_id_prefix>-archiver-MarketTick`` …),
    #: so a cluster's quotas and logs can tell huracan's clients apart
    client_id_prefix: str = "huracan"
    #: authentication and encryption of every client (huracan.streams.clients)
    security: KafkaSecurityConfig = KafkaSecurityConfig()
    #: a Confluent-compatible Schema Registry; None means single-object encoding
    schema_registry_url: str | None = None
    topic_prefix: str = "huracan"
    replication_factor: int = Field(1, ge=1)
    partitions: TopicPartitionsConfig = TopicPartitionsConfig()
    #: retention of the event topics in ms; -1 keeps them forever (the log is the truth)
    retention_ms: int = -1
    dead_letter_retention_ms: int = Field(30 * 24 * 3600 * 1000, ge=-1)


class RedisConfig(_Section):
    url: SecretStr = SecretStr(DEFAULT_REDIS_URL)


class PostgresConfig(_Section):
    dsn: SecretStr = SecretStr(DEFAULT_POSTGRES_DSN)
    pool_min_size: int = Field(1, ge=0)
    pool_max_size: int = Field(10, ge=1)


class FaustConfig(_Section):
    app_id: str = "huracan"
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    #: exactly_once (the default): one Kafka transaction per batch and source partition
    #: (huracan.agents.transactions; not Faust's own, which deadlocks this topology), so a
    #: read_committed consumer reads each output once, even after a crash. at_least_once: a
    #: crash can write an output twice, with the same id and bytes. Either way ids are derived
    #: and the sequencer and exchange de-duplicate on them. docs/decisions/0001-exactly-once.md.
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "exactly_once"
    store: str = "memory://"
    #: where Faust keeps its local files (table stores, app dir); relative to the working dir
    datadir: str = "data/faust"
    #: an agent takes up to batch_size records at a time: whatever its stream holds when it
    #: asks, or, when the stream is empty, the first records to arrive (it checks for a stop
    #: every batch_timeout_s while it waits; huracan/agents/faust_fixes/batching.py)
    batch_size: int = Field(500, ge=1)
    batch_timeout_s: float = Field(0.05, gt=0)
    #: the risk sequencer decides trade requests in event-time order once every market-data
    #: partition's watermark has passed them (huracan/domain/ordering.py). A partition whose
    #: consumer is caught up and has had no tick for order_idle_ms is declared idle by its coin
    #: agent and no longer holds the others back; a partition that is only behind is waited for
    order_idle_ms: int = Field(2000, ge=1)
    #: the safety net: requests held while the slowest watermark has not moved for this long
    #: (its worker died and nobody owns the partition yet) are released, out of event-time
    #: order, and counted (huracan_stall_releases_total). Must exceed order_idle_ms
    order_stall_ms: int = Field(30_000, ge=1)

    @field_validator("store")
    @classmethod
    def _exactly_once_in_memory(cls, v: str, info: Any) -> str:
        if info.data.get("processing_guarantee") == "exactly_once" and not v.startswith("memory"):
            raise ValueError(
                f"exactly_once needs the memory store, got {v!r}: tables are rebuilt from their "
                "committed changelogs at every start, and a persistent store would keep the rows "
                "of an aborted transaction across a crash"
            )
        return v

    @field_validator("order_stall_ms")
    @classmethod
    def _stall_after_idle(cls, v: int, info: Any) -> int:
        idle = info.data.get("order_idle_ms", 2000)
        if v <= idle:
            raise ValueError(
                f"order_stall_ms ({v}) must exceed order_idle_ms ({idle}): a stall release "
                "before partitions can be declared idle would decide out of event-time order"
            )
        return v


#: catalog topics (suffixes) the archive agent may archive: their events have coin, ts, event_id
ArchiveTopic = Literal["market-data", "executions", "risk-decisions"]


class ArchiveConfig(_Section):
    """``storage.archive``: where the Parquet archive lives, and the worker's archive agent.

    With ``enabled`` the worker runs ``huracan.agents.archive_agent``: one archiver per topic,
    each a Kafka consumer in a group of its own, writing ``<root>/<coin>/YYYYMMDD.parquet``
    (layout in ``huracan.storage.archive_paths``). A flush happens at ``flush_rows`` records
    or ``flush_seconds``, whichever comes first, and rewrites the day file of every coin it
    touches: about ``ingest × 43,200 / flush interval`` rows rewritten per second on average.
    docs/storage-and-replay.md has the figures for these defaults.
    """

    #: run the archive agent inside ``faust -A huracan worker`` (off by default: archiving is
    #: a deployment choice, and ``huracan archive`` does the same job as a batch)
    enabled: bool = False
    #: archive root; a relative path is relative to the process's working directory
    root: str = "data/archive"
    #: catalog topics to archive (names without the prefix)
    topics: tuple[ArchiveTopic, ...] = ("market-data",)
    #: flush once this many records are held (memory: a few hundred bytes each)
    flush_rows: int = Field(100_000, ge=1)
    #: ... or once the oldest held record is this old (new rows show in the files only then)
    flush_seconds: float = Field(300.0, gt=0)
    #: rows per Parquet row group
    row_group_size: int = Field(65_536, ge=1)

    @field_validator("topics", mode="before")
    @classmethod
    def _split_topics(cls, v: Any) -> Any:
        """Accept ``"market-data,executions"`` (handy in an environment variable)."""
        if isinstance(v, str):
            return tuple(t.strip() for t in v.split(",") if t.strip())
        return v

    @field_validator("topics")
    @classmethod
    def _distinct_topics(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"topics must be distinct, got {list(v)}")
        return v


class StorageConfig(_Section):
    """``storage:``: the Parquet archive (the model registry's storage is under ``engine``)."""

    archive: ArchiveConfig = ArchiveConfig()


class ResearchConfig(_Section):
    """``research:``: ``huracan retrain`` and ``huracan sweep`` (docs/research.md).

    Both run their tasks on Dask distributed: ``scheduler`` names a running scheduler
    (``tcp://HOST:8786``); ``None`` starts a local cluster of ``local_workers`` processes.
    """

    #: Dask scheduler address; None = a LocalCluster of processes on this machine
    scheduler: str | None = None
    #: worker processes of the local cluster (one thread each)
    local_workers: int = Field(2, ge=1)
    #: walk-forward folds: the period is cut into folds + 1 equal blocks, fold k trains on
    #: block k and is tested on block k + 1
    folds: int = Field(3, ge=1)
    #: the momentum candidate's grid: entry_z values tried on each training window
    momentum_entry_z: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5, 3.0)
    #: the linear candidate's grid: entry_z values (in standard deviations of its score)
    linear_entry_z: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5)
    #: ridge penalty of the linear fit (on standardised features)
    ridge_alpha: float = Field(10.0, ge=0)
    #: the linear fit's target: the mid's log return over this many of the coin's next ticks
    linear_horizon_ticks: int = Field(20, ge=1)
    #: promote a candidate only when its out-of-sample Sharpe beats the coin's active model's
    #: (or, without one, the built-in baseline's) by more than this
    promotion_margin_sharpe: float = Field(0.5, ge=0)
    #: ... and it closed at least this many trades out of sample
    promotion_min_trades: int = Field(5, ge=0)
    #: one-minute returns a window needs before its Sharpe is reported (the report's default)
    sharpe_min_periods: int = Field(30, ge=2)

    @field_validator("momentum_entry_z", "linear_entry_z")
    @classmethod
    def _positive_grid(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not x > 0 for x in v):
            raise ValueError(f"must be a non-empty list of positive numbers, got {list(v)}")
        return v


class HuracanConfig(_Section):
    engine: EngineConfig = EngineConfig()
    kafka: KafkaConfig = KafkaConfig()
    redis: RedisConfig = RedisConfig()
    postgres: PostgresConfig = PostgresConfig()
    faust: FaustConfig = FaustConfig()
    storage: StorageConfig = StorageConfig()
    research: ResearchConfig = ResearchConfig()

    def redacted(self) -> dict[str, Any]:
        """A JSON-safe dump with every secret shown as ``'**********'``."""
        redacted: dict[str, Any] = _redact(self.model_dump(mode="python"))
        return redacted


def _redact(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "**********" if value.get_secret_value() else ""
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        _set_path(tree, path, value)
    service_vars = {
        "HURACAN_KAFKA_BOOTSTRAP": ["kafka", "bootstrap_servers"],
        "HURACAN_SCHEMA_REGISTRY_URL": ["kafka", "schema_registry_url"],
        "HURACAN_REDIS_URL": ["redis", "url"],
        "HURACAN_POSTGRES_DSN": ["postgres", "dsn"],
    }
    for var, path in service_vars.items():
        if environ.get(var):
            _set_path(tree, path, environ[var])
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"  {key}: {e['msg']}")
    return "\n".join(lines)


def build_config(
    data: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    source: str = "<dict>",
) -> HuracanConfig:
    """Validate ``data`` overlaid with environment overrides; raise :class:`ConfigError`."""
    env = os.environ if environ is None else environ
    merged = _merge(dict(data or {}), _env_overrides(env))
    try:
        return HuracanConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> HuracanConfig:
    """Load ``path`` (default ``config/base.yaml``, or ``$HURACAN_CONFIG``) and validate it.

    Raises :class:`ConfigError` when the file is missing, is not YAML, is not a mapping, or
    fails validation; the message names the file and each bad key.
    """
    env = os.environ if environ is None else environ
    p = Path(path or env.get("HURACAN_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    return build_config(data, env, source=str(p))
