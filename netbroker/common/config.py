"""Settings: one frozen pydantic model per group, read from TOML and the environment.

Where a value comes from, lowest priority first:

1. the documented default in the model below;
2. the TOML file: ``--config PATH``, else ``$NETBROKER_CONFIG``, else
   ``./netbroker.toml`` when it exists;
3. environment variables ``NETBROKER_<GROUP>_<KEY>``, for example
   ``NETBROKER_DATABASE_URL`` or ``NETBROKER_CLOUDS_MIN_MBYTES_PER_S_FROM_TIER1``;
4. explicit overrides (command-line flags).

Every number an operator tunes carries its unit in its name. An invalid
value is refused with the key, the value, where it came from and why
(:class:`netbroker.common.errors.ConfigError`). ``netbroker config show --defaults``
prints the table generated from these models.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from netbroker.common.errors import ConfigError

__all__ = [
    "BrokerageSettings",
    "CloudSettings",
    "CollectorSettings",
    "DatabaseSettings",
    "DispatcherSettings",
    "MetricsSettings",
    "Pd2pSettings",
    "PrioritySettings",
    "RebrokerageSettings",
    "ServiceSettings",
    "Settings",
    "default_config_path",
    "describe_settings",
    "load_settings",
]

ENV_PREFIX = "NETBROKER_"
DEFAULT_CONFIG_FILE = "netbroker.toml"


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Group):
    """Where the state lives: SQLite by default, PostgreSQL to scale out."""

    url: str = Field(
        "sqlite:///netbroker.db",
        description="SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB.",
    )
    sqlite_busy_timeout_ms: int = Field(
        10_000, gt=0, description="How long a SQLite writer waits for the lock, in ms."
    )
    pool_size: int = Field(
        5, ge=1, le=200, description="Pooled connections per service process (PostgreSQL)."
    )
    echo_sql: bool = Field(False, description="Log every SQL statement (debugging only).")

    @field_validator("url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if not url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError("must start with sqlite:, postgresql: or postgresql+psycopg:")
        return url


class ServiceSettings(_Group):
    """The HTTP service started by ``netbroker serve``."""

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(25080, ge=1, le=65535, description="TCP port to listen on.")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes.")
    upgrade_schema_at_start: bool = Field(
        True, description="Bring the database to the newest schema before serving."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level of log record written."
    )
    auth: Literal["required", "off"] = Field(
        "required", description="required: every write needs a bearer token of a role allowed "
        "there (netbroker token create); off: no checks (a trusted, single-user setup)."
    )
    access_log: bool = Field(
        False, description="Also log one line per HTTP request (uvicorn's access log, at "
        "info). Off by default: pilots make thousands of calls a second, each line costs "
        "one, and the app's own lines carry the request ids.")
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one object per record, with the HTTP request id; text."
    )
    run_cycles: bool = Field(
        True, description="Schedule the periodic cycles here (one process runs each at a time)."
    )
    max_json_body_bytes: int = Field(
        16 * 2**20, ge=1024,
        description="Largest JSON body the API reads (metric ingestion and the pilots' "
                    "routes have their own bounds), bytes (413 beyond).")


class CloudSettings(_Group):
    """Dynamic cloud membership: when a foreign site joins or leaves a cloud."""

    recompute_minutes: float = Field(
        30.0, gt=0, description="Period of the membership recomputation, in minutes."
    )
    min_mbytes_per_s_from_tier1: float = Field(
        5.0, gt=0, description="Consolidated Tier-1 -> site throughput needed to join, MB/s."
    )
    max_packet_loss_fraction: float = Field(
        0.02, ge=0, le=1, description="Highest packet loss on the link to join, fraction 0..1."
    )
    min_samples: int = Field(
        3, ge=1, description="Measurements in the window needed before a link counts."
    )
    leave_margin_fraction: float = Field(
        0.2, ge=0, lt=1, description="A member leaves only below threshold * (1 - margin)."
    )
    stale_cycles: int = Field(
        3, ge=1, description="Cycles without data after which a foreign member leaves."
    )
    min_job_success_fraction: float = Field(
        0.8, ge=0, le=1, description="Site's own job success rate needed to join, 0..1."
    )
    job_success_window_days: float = Field(
        3.0, gt=0, description="Window of the job success rate, in days."
    )
    window: Literal["1h", "1d", "1w"] = Field(
        "1d", description="Measurement window the links are judged on."
    )


class MetricsSettings(_Group):
    """Network metrics: how samples are bucketed and how long raw ones are kept."""

    bucket_minutes: int = Field(
        10, ge=1, le=1440, description="Width of the time buckets samples fold into, minutes."
    )
    raw_retention_days: float = Field(
        14.0, gt=0, description="Raw samples older than this are pruned (and refused), days."
    )

    aggregate_minutes: float | None = Field(
        None, gt=0,
        description="Period of the aggregate cycle (blocking closed bucket starts), minutes; "
                    "default: one bucket (bucket_minutes).",
    )
    block_after_minutes: int = Field(
        60, ge=0, le=7 * 1440,
        description="A bucket start is copied into its block (the aggregate cycle) this "
                    "long after its bucket closes, minutes; later samples rebuild it.",
    )

    min_samples: int = Field(
        2, ge=1, description="Samples a source needs in a window for its value to count."
    )
    precedence: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "throughput": ["fts", "xrootd", "perfsonar", "nws"],
            "success": ["fts", "xrootd"],
            "packet_loss": ["perfsonar", "nws"],
            "owd": ["perfsonar"],
            "rtt": ["perfsonar", "nws"],
        },
        description="Per kind, the sources whose values consolidate a link, best first.",
    )

    closeness_best_mbytes_per_s: float = Field(
        200.0, gt=0, description="Throughput graded closeness 0 (best) and above, MB/s."
    )
    closeness_worst_mbytes_per_s: float = Field(
        0.5, gt=0, description="Throughput graded closeness 11 (worst) and below, MB/s."
    )

    @model_validator(mode="after")
    def _closeness_scale_ordered(self) -> MetricsSettings:
        if self.closeness_worst_mbytes_per_s >= self.closeness_best_mbytes_per_s:
            raise ValueError("closeness_worst_mbytes_per_s must be below "
                             "closeness_best_mbytes_per_s")
        return self

    @field_validator("precedence")
    @classmethod
    def _known_sources(cls, precedence: dict[str, list[str]]) -> dict[str, list[str]]:
        kinds = {"throughput", "success", "packet_loss", "owd", "rtt"}
        sources = {"fts", "xrootd", "perfsonar", "nws"}
        for kind, order in precedence.items():
            if kind not in kinds:
                raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(kinds)}")
            unknown = [s for s in order if s not in sources]
            if unknown:
                raise ValueError(f"{kind}: unknown sources {unknown}; expected {sorted(sources)}")
        return precedence

    def precedence_for(self, kind: str) -> list[str]:
        """The sources consolidating ``kind``, best first (none configured: none used)."""
        return self.precedence.get(kind, [])

    @field_validator("bucket_minutes")
    @classmethod
    def _divides_an_hour_or_a_day(cls, minutes: int) -> int:
        # The 1h window must be a whole number of buckets.
        if 60 % minutes and minutes % 60:
            raise ValueError("must divide 60 or be a multiple of 60")
        return minutes


class CollectorSettings(_Group):
    """Pull collectors: which archives to read, how patiently, how often.

    Lists can be given in the environment as JSON, e.g.
    ``NETBROKER_COLLECTORS_FTS_URLS='["https://monit.example/fts.jsonl"]'``.
    """

    fts_urls: list[str] = Field(
        default_factory=list, description="URLs serving FTS completion messages (JSON lines).")
    esmond_urls: list[str] = Field(
        default_factory=list,
        description="esmond archive roots, e.g. https://ps.example/esmond/perfsonar/archive/.")
    pscheduler_urls: list[str] = Field(
        default_factory=list, description="URLs serving archived pScheduler results.")
    xrootd_urls: list[str] = Field(
        default_factory=list, description="URLs serving cost-matrix or file-close records.")
    nws_urls: list[str] = Field(
        default_factory=list, description="URLs serving an ATLAS NWS network-metrics document.")
    cycle_minutes: float = Field(15.0, gt=0, description="Period of the pull cycle, minutes.")
    http_timeout_s: float = Field(30.0, gt=0, description="Timeout of one HTTP request, s.")
    http_retries: int = Field(
        3, ge=0, le=10, description="Retries of a failed request (with backoff).")
    esmond_time_range_s: int = Field(
        3600, gt=0, le=7 * 86400, description="How far back each esmond pull reads, s.")
    stomp_brokers: list[str] = Field(
        default_factory=list, description="STOMP brokers FTS publishes to, host:port each "
                                          "(netbroker collect stomp).")
    stomp_destination: str = Field(
        "/topic/transfer.fts_monitoring_complete",
        description="Where FTS completion messages are taken from: a /topic/ (a durable "
                    "subscription) or a /queue/.")
    stomp_subscription: str = Field(
        "netbroker", min_length=1, max_length=128,
        description="The durable subscription's name (and client id) at the broker.")
    stomp_user: str = Field("", description="The broker login (empty: none).")
    stomp_password: str = Field("", description="The broker passcode.")
    stomp_batch_messages: int = Field(
        5000, ge=1, le=100_000, description="Messages ingested (then acknowledged) together.")
    stomp_batch_wait_s: float = Field(
        2.0, gt=0, description="Longest a batch waits for more messages, s.")

    @field_validator("stomp_brokers")
    @classmethod
    def _host_and_port(cls, brokers: list[str]) -> list[str]:
        for broker in brokers:
            host, _, port = broker.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{broker!r} is not host:port")
        return brokers

    @field_validator("fts_urls", "esmond_urls", "pscheduler_urls", "xrootd_urls", "nws_urls")
    @classmethod
    def _http_only(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return urls


# A pilot's prodSourceLabel -> the jobs it takes: analysis pilots (user, panda) the
# analysis jobs, production and test pilots (Pilot 3's default is ptest) production.
PILOT_LABELS = {"user": "user", "panda": "user", "managed": "managed", "ptest": "managed",
                "prod_test": "managed", "rc_test": "managed", "rc_test2": "managed",
                "rc_alrb": "managed"}


class DispatcherSettings(_Group):
    """The pilot-facing dispatcher: how long silence is tolerated."""

    start_timeout_minutes: float = Field(
        30.0, gt=0, description="A sent job never started after this goes back to activated."
    )
    lost_heartbeat_minutes: float = Field(
        60.0, gt=0, description="A running job silent this long fails (lost heartbeat)."
    )
    watchdog_minutes: float = Field(5.0, gt=0, description="Period of the watchdog, minutes.")
    event_range_timeout_minutes: float = Field(
        30.0, gt=0, description="A running event range silent this long goes back to ready."
    )
    event_range_max_attempts: int = Field(
        3, ge=1, description="Attempts of an event range before it stays failed."
    )
    max_request_bytes: int = Field(
        16 * 2**20, ge=1024,
        description="Largest body a pilot's PanDA-wire request may have, bytes (413 beyond).")
    max_inflated_bytes: int = Field(
        64 * 2**20, ge=1024,
        description="Largest a gzip-compressed pilot request may inflate to, bytes (413 beyond).")
    max_form_fields: int = Field(
        1000, ge=10, description="Most fields a pilot's PanDA-wire request may hold (413 beyond).")
    transformations_dir: str = Field(
        "", description="Folder whose scripts are served at /trf/user/<name> to pilots that "
                        "download their job's transformation (Pilot 3.11); empty: none served.")
    transformation_base_url: str = Field(
        "", description="A job whose transformation is a bare name is given it as "
                        "'<this>/<name>'; empty: this server's /trf/user as the pilot reached "
                        "it. Pilot 3.7 downloads only from its own list of PanDA hosts: "
                        "http://pandaserver-doma.cern.ch:25080/trf/user with the script in "
                        "its $HARVESTER_WORKDIR.")
    pilot_labels: dict[str, str] = Field(
        default_factory=lambda: dict(PILOT_LABELS),
        description="The job label (managed: production, user: analysis) a pilot's "
                    "prodSourceLabel asks for; a label not listed asks for jobs of its own.")


class BrokerageSettings(_Group):
    """Task and job brokerage: how candidates are weighed and chosen.

    A candidate's score is ``weight_data * data + weight_capacity * free +
    weight_network * 1 / (1 + transfer_s / network_scale_s)``, each term in
    0..1; candidates within ``near_equal_fraction`` of the best are drawn at
    random in proportion to their score (seeded, so a decision can be replayed).
    """

    mode: Literal["clouds", "full_mesh"] = Field(
        "clouds", description="clouds: task -> cloud; full_mesh: task -> nucleus, no boundary.")
    weight_data: float = Field(
        1.0, ge=0, description="Weight of input data already at the candidate.")
    weight_capacity: float = Field(
        0.5, ge=0, description="Weight of free pilot slots (free / slots).")
    weight_network: float = Field(
        0.5, ge=0, description="Weight of the time to bring the missing input.")
    network_scale_s: float = Field(
        3600.0, gt=0, description="Transfer time at which the network term is halved, s.")
    unknown_link_mbytes_per_s: float = Field(
        1.0, gt=0, description="Throughput assumed for an unmeasured link (ranked last), MB/s.")
    tape_recall_mbytes_per_s: float = Field(
        50.0, gt=0, description="Rate of bringing input from a site's own tape to its disk, MB/s.")
    near_equal_fraction: float = Field(
        0.1, ge=0, lt=1, description="Scores within this fraction of the best are drawn at random.")
    max_waiting_per_slot: float = Field(
        2.0, gt=0, description="A queue takes jobs until this many wait per pilot slot; "
                               "then the next best take the rest.")
    seed: int = Field(0, ge=0, description="Seed of the weighted draw (mixed with the task id).")
    start_sooner_by_minutes: float = Field(
        720.0, ge=0,
        description="A task candidate holding the input loses its data term when another "
                    "would start the task more than this much sooner: its expected wait for "
                    "a slot (the jobs waiting per pilot slot of its passing queues times the "
                    "task's job wall time) against the other's wait plus the time to bring "
                    "the input to it, minutes.")
    remote_input_max_transfer_s: float = Field(
        1800.0, ge=0,
        description="A job whose missing input arrives within this is activated at once, s; "
                    "slower ones wait assigned for the data.")
    output_to_input_fraction: float = Field(
        0.5, ge=0, description="Expected output bytes per input byte, for the Tier-1 space check.")
    scratch_disk_mb: int = Field(
        2000, ge=0, description="Work-directory disk a job needs besides its input, MB.")
    cycle_minutes: float = Field(
        5.0, gt=0, description="Period of the retry of tasks that found no candidate, minutes.")


class RebrokerageSettings(_Group):
    """Rebrokerage: when a waiting job is moved to another site."""

    cycle_minutes: float = Field(15.0, gt=0, description="Period of the cycle, minutes.")
    min_wait_minutes: float = Field(
        60.0, ge=0, description="Only jobs waiting (assigned/activated) this long move, minutes.")
    busy_queued_per_slot: float = Field(
        2.0, gt=0, description="A queue with more waiting jobs per pilot slot is busy.")
    better_by_fraction: float = Field(
        0.2, ge=0, description="The new site must score this fraction above the current one.")
    max_rebrokerages: int = Field(3, ge=0, description="Moves allowed per job.")
    start_sooner_by_minutes: float = Field(
        120.0, ge=0, description="A job also moves to a queue of its cloud where it would "
        "start more than this much sooner: its expected wait where it is (the jobs a pilot "
        "takes before it, over the queue's slots, times its wall time) against the time "
        "to bring its input to a queue with a free slot, minutes.")


class PrioritySettings(_Group):
    """Job priorities: fair share, aging and the failure penalty (boosts live in the DB)."""

    cycle_minutes: float = Field(10.0, gt=0, description="Period of the recomputation, minutes.")
    user_cpu_hours_per_day: float = Field(
        1000.0, gt=0, description="A user's fair share: CPU-hours per 24 h before a penalty.")
    fairshare_penalty: int = Field(
        100, ge=0, description="Priority lost per 100% of usage above the fair share.")
    fairshare_max_penalty: int = Field(
        500, ge=0, description="Largest fair-share penalty.")
    aging_per_hour: float = Field(
        10.0, ge=0, description="Priority a waiting job gains per hour of waiting.")
    aging_cap: int = Field(300, ge=0, description="Largest priority gained by aging.")
    failure_penalty: int = Field(
        50, ge=0, description="Priority lost per failed earlier attempt.")


class Pd2pSettings(_Group):
    """PD2P: when a dataset gets a new replica, and where."""

    cycle_minutes: float = Field(30.0, gt=0, description="Period of the PD2P cycle, minutes.")
    min_waiting_jobs: int = Field(
        20, ge=1, description="Waiting jobs reading a dataset that trigger a new replica.")
    min_accesses_per_week: int = Field(
        200, ge=1, description="Jobs brokered on a dataset in 7 days that trigger a replica.")
    max_replicas: int = Field(
        5, ge=1, description="Disk replicas (pending decisions included) a dataset may have.")
    cooldown_hours: float = Field(
        6.0, ge=0, description="After a failed or expired decision, wait this long, hours.")
    decision_expiry_hours: float = Field(
        48.0, gt=0, description="A decision not done by then expires, hours.")
    replica_lifetime_days: float = Field(
        14.0, gt=0, description="Lifetime of a replica PD2P creates, days.")
    site_quota_bytes_per_day: float = Field(
        50e12, gt=0, description="Bytes PD2P may send to one site per 24 h.")
    max_decisions_per_hour: int = Field(
        100, ge=1, description="Global rate limit on new decisions.")
    excluded_patterns: list[str] = Field(
        default_factory=lambda: ["*.log", "*.log.*", "*_sub[0-9]*", "ddo.*"],
        description="Dataset names (fnmatch patterns) never replicated: logs and the like.")
    weight_network: float = Field(1.0, ge=0, description="Weight of the transfer time term.")
    weight_capacity: float = Field(
        0.3, ge=0, description="Weight of the target site's free pilot slots.")
    weight_tier: float = Field(0.2, ge=0, description="Weight of the target site's tier.")
    activity: str = Field("Data Brokering", min_length=1,
                          description="Rucio activity of the replication rules.")


class Settings(_Group):
    """All of netbroker's settings, one attribute per group."""

    database: DatabaseSettings = DatabaseSettings()
    service: ServiceSettings = ServiceSettings()
    clouds: CloudSettings = CloudSettings()
    metrics: MetricsSettings = MetricsSettings()
    collectors: CollectorSettings = CollectorSettings()
    dispatcher: DispatcherSettings = DispatcherSettings()
    brokerage: BrokerageSettings = BrokerageSettings()
    rebrokerage: RebrokerageSettings = RebrokerageSettings()
    priority: PrioritySettings = PrioritySettings()
    pd2p: Pd2pSettings = Pd2pSettings()


def default_config_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """Return the config file to read when none is named, or None.

    ``$NETBROKER_CONFIG`` wins; otherwise ``./netbroker.toml`` if it exists.
    """
    environ = os.environ if environ is None else environ
    if environ.get(f"{ENV_PREFIX}CONFIG"):
        return Path(environ[f"{ENV_PREFIX}CONFIG"])
    local = Path(DEFAULT_CONFIG_FILE)
    return local if local.is_file() else None


def load_settings(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read, merge and validate the settings.

    Parameters
    ----------
    path : str or Path, optional
        TOML file; when None, :func:`default_config_path` decides.
    environ : mapping, optional
        Environment to read ``NETBROKER_<GROUP>_<KEY>`` from (default ``os.environ``).
    overrides : mapping, optional
        Dotted keys with the highest priority, e.g. ``{"service.port": 8080}``.

    Returns
    -------
    Settings
        Frozen and validated.

    Raises
    ------
    ConfigError
        The file is missing or not TOML, or a value is invalid; the message
        names each key, its value, where it came from and why.

    Examples
    --------
    >>> s = load_settings(environ={"NETBROKER_SERVICE_PORT": "8080"})
    >>> s.service.port, s.clouds.min_mbytes_per_s_from_tier1
    (8080, 5.0)
    """
    environ = os.environ if environ is None else environ
    file = Path(path) if path is not None else default_config_path(environ)
    data: dict[str, Any] = _read_toml(file) if file is not None else {}
    origin = {key: f"file {file}" for key in _dotted_keys(data)}
    for key, value in _env_values(environ):
        _set_dotted(data, key, value)
        origin[key] = f"env {ENV_PREFIX}{key.replace('.', '_').upper()}"
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
        origin[key] = "command line"
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origin), str(file) if file else None) from None


def describe_settings() -> list[dict[str, str]]:
    """Return one row per setting: key, default, type and description.

    The rows feed ``netbroker config show --defaults`` and the docs.

    Examples
    --------
    >>> rows = {r["key"]: r for r in describe_settings()}
    >>> rows["clouds.min_mbytes_per_s_from_tier1"]["default"]
    '5.0'
    """
    rows = []
    for group, field in Settings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key, sub in model.model_fields.items():
            rows.append(
                {
                    "key": f"{group}.{key}",
                    "default": str(sub.default),
                    "type": getattr(sub.annotation, "__name__", str(sub.annotation)),
                    "description": sub.description or "",
                }
            )
    return rows


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"config file {file} does not exist"], str(file)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(file)) from None


def _env_values(environ: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """Yield (dotted key, raw string) for every env variable naming a known setting."""
    for group, field in Settings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key, field in model.model_fields.items():
            name = f"{ENV_PREFIX}{group}_{key}".upper()
            if name in environ:
                yield f"{group}.{key}", _env_value(environ[name], field.annotation)


def _env_value(raw: str, annotation: Any) -> Any:
    """Lists and tables come from the environment as JSON; scalars as they are."""
    origin = getattr(annotation, "__origin__", None)
    if origin in (list, dict):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw  # validation will say what is wrong with it
    return raw


def _dotted_keys(data: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _dotted_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *groups, last = key.split(".")
    node = data
    for group in groups:
        node = node.setdefault(group, {})
        if not isinstance(node, dict):
            raise ConfigError([f"{key}: {group} is not a table"])
    node[last] = value


def _explain(exc: ValidationError, origin: Mapping[str, str]) -> list[str]:
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        where = origin.get(key)
        source = f" (from {where})" if where else ""
        if err["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown setting{source}")
        else:
            problems.append(f"{key} = {err['input']!r}: {err['msg']}{source}")
    return problems
