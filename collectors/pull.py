"""Pull collectors: fetch configured archives over HTTP and ingest what they serve.

One pull cycle reads every URL of ``[collectors]`` once: FTS message
streams, XRootD records and NWS documents as served; esmond archives and
pScheduler archives as their REST APIs answer, in their steps:

- **esmond**: the archive's metadata (paged by ``limit``/``offset``), then,
  for each metadata object, the points of each event type netbroker reads
  (``collectors.esmond``), base and every summary the metadata lists, each
  by time range: from where the last pull of that series stopped
  (``netbroker.db.pull_cursors``), else ``esmond_time_range_s`` back; the
  answers are bundled as ``collectors.esmond`` reads them, keyed by the URI
  fetched;
- **pScheduler**: a task's runs listing (a list of run URLs, asked from the
  start of the oldest run not final at the last pull) is read run by run,
  each with its task (``task-href``, fetched once per task); a single run
  gets its task the same way; anything else (an OpenSearch search, archived
  results) is ingested as served.

Requests have a timeout and are retried with backoff on connection errors
and 5xx answers. A URL that still fails is reported and skipped: one archive
down never stops the others; a series that fails is reported with the URL's
result, its cursor left where it was. Cursors move only once the batch that
read them is stored.

The HTTP session is a parameter (a transport seam): tests pass their own,
production a :func:`make_session`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from sqlalchemy.engine import Engine
from urllib3.util.retry import Retry

from collectors.esmond import EVENT_KINDS, SeriesUri, readable, series_uri
from collectors.ingest import IngestReport, ingest
from collectors.records import Source
from netbroker.common.config import CollectorSettings, MetricsSettings
from netbroker.db.pull_cursors import PullCursorDB

__all__ = ["ESMOND_EVENT_TYPES", "FetchLog", "PullResult", "fetch_esmond_bundle",
           "fetch_pscheduler", "make_session", "pull_all"]

log = logging.getLogger(__name__)

# The esmond event types collectors.esmond turns into samples (the counts: into loss).
ESMOND_EVENT_TYPES = (*EVENT_KINDS, "packet-count-lost", "packet-count-sent")
_PAGE = 1000  # esmond's default metadata page
_MAX_PAGES = 100
_METADATA = "metadata"
_RUNS = "runs"


@dataclass(frozen=True)
class PullResult:
    """What pulling one URL gave: an ingestion report, or why there is none.

    ``requests`` counts the HTTP requests made; ``errors`` the parts that
    failed while the rest was read (an esmond series, a pScheduler run).
    """

    source: str
    url: str
    report: IngestReport | None = None
    error: str | None = None
    requests: int = 0
    errors: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "url": self.url, "error": self.error,
                "requests": self.requests, "errors": list(self.errors),
                "report": self.report.as_dict(max_rejected=10) if self.report else None}


@dataclass
class FetchLog:
    """One URL's fetching: the session, its limits, the requests made, what failed."""

    session: requests.Session
    timeout_s: float
    requests: int = 0
    errors: list[str] = field(default_factory=list)

    def json(self, url: str, params: dict[str, str] | None = None) -> Any:
        self.requests += 1
        answer = self.session.get(url, params=params, timeout=self.timeout_s)
        answer.raise_for_status()
        return answer.json()

    def body(self, url: str) -> bytes:
        self.requests += 1
        answer = self.session.get(url, timeout=self.timeout_s)
        answer.raise_for_status()
        return answer.content


def make_session(retries: int) -> requests.Session:
    """A session retrying connection errors and 5xx answers ``retries`` times, with backoff."""
    session = requests.Session()
    retry = Retry(total=retries, connect=retries, read=retries, status=retries,
                  backoff_factor=0.5, status_forcelist=(500, 502, 503, 504),
                  allowed_methods=("GET",), raise_on_status=False)
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "netbroker-collector"
    return session


def fetch_esmond_bundle(session: requests.Session, archive_url: str, time_range_s: int,
                        timeout_s: float, cursors: dict[str, float] | None = None,
                        since_s: float | None = None, now_s: float | None = None,
                        ) -> tuple[bytes, dict[str, float], FetchLog]:
    """An esmond archive's metadata and the new points of each event type and summary read.

    Parameters
    ----------
    session : requests.Session
    archive_url : str
        The archive root, e.g. ``https://ps.example.org/esmond/perfsonar/archive/``.
    time_range_s : int
        How far back a series read for the first time goes, s.
    timeout_s : float
    cursors : dict, optional
        Per series (and ``"metadata"``), the time read through at the last pull.
    since_s : float, optional
        Read every series from this time (a backfill), whatever the cursors say.
    now_s : float, optional
        The present, epoch s.

    Returns
    -------
    bundle : bytes
        ``{"metadata": [...], "data": {uri: points}}`` as JSON.
    through : dict
        Per series read, the newest point's time (and ``"metadata"``: now):
        the cursors to keep once the bundle is stored.
    fetch : FetchLog
        The requests made, and the series that failed (their cursors not moved).

    Raises
    ------
    requests.RequestException, ValueError
        The metadata cannot be read (a series that fails is only reported).

    Notes
    -----
    1 + p + s requests: p metadata pages, s series (base and summaries of the
    event types read) across the metadata objects.
    """
    now_s = time.time() if now_s is None else now_s
    cursors = cursors or {}
    fetch = FetchLog(session, timeout_s)
    metadata = _esmond_metadata(fetch, archive_url, _window(cursors.get(_METADATA), since_s,
                                                            time_range_s, now_s))
    data: dict[str, Any] = {}
    through = {_METADATA: now_s}
    for uri, found in _series_of(metadata):
        name = _series_name(found)
        try:
            points = fetch.json(urljoin(archive_url, uri),
                                _window(cursors.get(name), since_s, time_range_s, now_s))
        except (requests.RequestException, ValueError) as exc:
            fetch.errors.append(f"{uri}: {type(exc).__name__}: {exc}")
            continue
        data[uri] = points
        newest = _newest_ts(points)
        if newest is not None:
            through[name] = newest
    return json.dumps({"metadata": metadata, "data": data}).encode(), through, fetch


def _esmond_metadata(fetch: FetchLog, archive_url: str, window: dict[str, str]) -> list[Any]:
    """Every metadata object the archive lists for the window, page by page."""
    metadata: list[Any] = []
    for page in range(_MAX_PAGES):
        answer = fetch.json(archive_url, {**window, "limit": str(_PAGE),
                                          "offset": str(page * _PAGE)})
        if not isinstance(answer, list):
            raise ValueError(f"{archive_url}: the metadata answer is not a list")
        metadata.extend(answer)
        if len(answer) < _PAGE:
            break
    return metadata


def _series_of(metadata: list[Any]) -> list[tuple[str, SeriesUri]]:
    """(uri, series) of each base and summary of the event types read, in order (not
    those whose points give no sample, as a throughput aggregation's)."""
    out = []
    for meta in metadata:
        entries = meta.get("event-types") if isinstance(meta, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or entry.get("event-type") not in ESMOND_EVENT_TYPES:
                continue
            uris = [entry.get("base-uri")]
            summaries = entry.get("summaries")
            uris += [s.get("uri") for s in summaries if isinstance(s, dict)
                     ] if isinstance(summaries, list) else []
            for uri in uris:
                if not isinstance(uri, str):
                    continue
                found = series_uri(uri)
                if found is not None and readable(found):
                    out.append((uri, found))
    return out


def _series_name(found: SeriesUri) -> str:
    return f"{found.metadata_key}/{found.event_type}/{found.summary}/{found.window_s}"


def _window(through_s: float | None, since_s: float | None, range_s: int,
            now_s: float) -> dict[str, str]:
    """esmond's time filter: from the backfill start, else after the cursor, else a range."""
    if since_s is not None:
        return {"time-start": str(int(since_s))}
    if through_s is not None:
        return {"time-start": str(int(through_s) + 1)}
    return {"time-start": str(int(now_s - range_s))}


def _newest_ts(points: Any) -> float | None:
    newest = None
    for point in points if isinstance(points, list) else []:
        try:
            ts = float(point["ts"])
        except (TypeError, KeyError, ValueError):
            continue
        newest = ts if newest is None else max(newest, ts)
    return newest


def fetch_pscheduler(session: requests.Session, url: str, timeout_s: float,
                     cursor_s: float | None = None) -> tuple[bytes, float | None, FetchLog]:
    """A pScheduler archive's answer, each run with its task.

    A runs listing (a JSON list of run URLs; asked with ``start`` from
    ``cursor_s`` when given) is fetched run by run; a run without its task,
    alone or in a list of runs, gets it from its ``task-href`` (once per
    task); any other answer is returned as served. Returns the body to
    ingest, the cursor to keep (the start of the oldest run not final, else
    just after the newest run's start; None when there was no listing) and
    the fetch.
    """
    fetch = FetchLog(session, timeout_s)
    params = ({"start": datetime.fromtimestamp(cursor_s, UTC).isoformat()}
              if cursor_s is not None else None)
    answer = fetch.json(url, params)
    tasks: dict[str, Any] = {}
    if isinstance(answer, list) and answer and all(isinstance(u, str) for u in answer):
        runs = []
        for run_url in answer:
            try:
                runs.append(_with_task(fetch, fetch.json(run_url), tasks))
            except (requests.RequestException, ValueError) as exc:
                fetch.errors.append(f"{run_url}: {type(exc).__name__}: {exc}")
        return json.dumps(runs).encode(), _runs_cursor(runs, cursor_s), fetch
    if isinstance(answer, dict):
        answer = _with_task(fetch, answer, tasks)
    elif isinstance(answer, list):  # runs expanded in the answer: each gets its task too
        answer = [_with_task(fetch, run, tasks) for run in answer]
    return json.dumps(answer).encode(), None, fetch


def _with_task(fetch: FetchLog, run: Any, tasks: dict[str, Any]) -> Any:
    """A run with its task (fetched from its ``task-href`` once per task); anything
    that is no run without its task, as it is."""
    href = run.get("task-href") if isinstance(run, dict) else None
    if not isinstance(href, str) or "task" in run or "state" not in run:
        return run
    if href not in tasks:
        tasks[href] = fetch.json(href)
    return {**run, "task": tasks[href]}


def _runs_cursor(runs: list[Any], before: float | None) -> float | None:
    """Where the next listing starts: at the oldest run not final (it may finish), else
    just after the newest run's start."""
    starts, open_starts = [], []
    for run in runs:
        try:
            start = datetime.fromisoformat(str(run["start-time"]).replace("Z", "+00:00"))
        except (TypeError, KeyError, ValueError):
            continue
        start_s = start.timestamp() if start.tzinfo else start.replace(tzinfo=UTC).timestamp()
        starts.append(start_s)
        if run.get("state") not in ("finished", "failed"):
            open_starts.append(start_s)
    if open_starts:
        return min(open_starts)
    return max(starts) + 1 if starts else before


def pull_all(engine: Engine, settings: CollectorSettings,
             metrics: MetricsSettings | None = None,
             session: requests.Session | None = None, since_s: float | None = None,
             now_s: float | None = None) -> list[PullResult]:
    """Fetch every configured URL once and ingest what each serves.

    Returns one :class:`PullResult` per URL, in configuration order; a URL
    that cannot be read gets its error, and the others go on. ``since_s``
    reads from that time (esmond series, pScheduler runs) and keeps what is
    older than the raw retention: a backfill.
    """
    session = session or make_session(settings.http_retries)
    plan = ([(Source.FTS, u, _plain) for u in settings.fts_urls]
            + [(Source.PERFSONAR, u, _esmond) for u in settings.esmond_urls]
            + [(Source.PERFSONAR, u, _pscheduler) for u in settings.pscheduler_urls]
            + [(Source.XROOTD, u, _plain) for u in settings.xrootd_urls]
            + [(Source.NWS, u, _plain) for u in settings.nws_urls])
    results = []
    for source, url, pull in plan:
        job = _Job(engine, session, settings, metrics, since_s,
                   time.time() if now_s is None else now_s)
        try:
            results.append(pull(job, source, url))
        except (requests.RequestException, ValueError) as exc:
            log.warning("pull of %s failed: %s", url, exc, extra={"url": url})
            results.append(PullResult(source.value, url, error=f"{type(exc).__name__}: {exc}"))
    return results


@dataclass(frozen=True)
class _Job:
    engine: Engine
    session: requests.Session
    settings: CollectorSettings
    metrics: MetricsSettings | None
    since_s: float | None
    now_s: float

    def ingest(self, source: Source, body: bytes) -> IngestReport:
        return ingest(self.engine, source, body, self.metrics, now_s=self.now_s,
                      since_s=self.since_s)

    def cursors(self, url: str) -> dict[str, float]:
        with self.engine.connect() as conn:
            return PullCursorDB(conn).cursors(url)

    def advance(self, url: str, through: dict[str, float]) -> None:
        with self.engine.begin() as conn:
            PullCursorDB(conn).advance(url, through, datetime.fromtimestamp(self.now_s, UTC))


def _plain(job: _Job, source: Source, url: str) -> PullResult:
    fetch = FetchLog(job.session, job.settings.http_timeout_s)
    body = fetch.body(url)
    return PullResult(source.value, url, job.ingest(source, body), requests=fetch.requests)


def _esmond(job: _Job, source: Source, url: str) -> PullResult:
    body, through, fetch = fetch_esmond_bundle(
        job.session, url, job.settings.esmond_time_range_s, job.settings.http_timeout_s,
        job.cursors(url), job.since_s, job.now_s)
    report = job.ingest(source, body)
    job.advance(url, through)
    return PullResult(source.value, url, report, requests=fetch.requests,
                      errors=tuple(fetch.errors))


def _pscheduler(job: _Job, source: Source, url: str) -> PullResult:
    cursor = job.since_s if job.since_s is not None else job.cursors(url).get(_RUNS)
    body, through, fetch = fetch_pscheduler(job.session, url, job.settings.http_timeout_s,
                                            cursor)
    report = job.ingest(source, body)
    if through is not None:
        job.advance(url, {_RUNS: through})
    return PullResult(source.value, url, report, requests=fetch.requests,
                      errors=tuple(fetch.errors))
