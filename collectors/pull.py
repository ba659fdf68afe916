"""Pull collectors: fetch configured archives over HTTP and ingest what they serve.

One pull cycle reads every URL of ``[collectors]`` once: FTS message
streams, esmond archives (metadata, then the points of each event type,
bundled as ``collectors.perfsonar`` reads them), pScheduler results,
XRootD records and NWS documents. Requests have a timeout and are retried
with backoff on connection errors and 5xx answers. A URL that still fails
is reported and skipped: one archive down never stops the others.

The HTTP session is a parameter (a transport seam): tests pass their own,
production a :func:`make_session`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from sqlalchemy.engine import Engine
from urllib3.util.retry import Retry

from collectors.ingest import IngestReport, ingest
from collectors.records import Source
from netbroker.config import CollectorSettings, MetricsSettings

__all__ = ["ESMOND_EVENT_TYPES", "PullResult", "fetch_esmond_bundle", "make_session", "pull_all"]

log = logging.getLogger(__name__)

# The esmond event types collectors.perfsonar turns into samples.
ESMOND_EVENT_TYPES = ("throughput", "packet-loss-rate", "histogram-owdelay", "histogram-rtt")


@dataclass(frozen=True)
class PullResult:
    """What pulling one URL gave: an ingestion report, or why there is none."""

    source: str
    url: str
    report: IngestReport | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "url": self.url, "error": self.error,
                "report": self.report.as_dict(max_rejected=10) if self.report else None}


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
                        timeout_s: float) -> bytes:
    """Read an esmond archive's metadata and the recent points of each usable event type.

    Returns the bundle ``{"metadata": [...], "data": {base-uri: points}}`` as
    JSON bytes. Raises ``requests.RequestException`` or ``ValueError`` when
    the archive cannot be read.

    Notes
    -----
    1 + e requests for e usable event types across the metadata objects.
    """
    params = {"time-range": str(time_range_s)}
    metadata = _get_json(session, archive_url, params, timeout_s)
    if not isinstance(metadata, list):
        raise ValueError(f"{archive_url}: metadata answer is not a list")
    data: dict[str, Any] = {}
    for meta in metadata:
        for event in (meta.get("event-types") or []) if isinstance(meta, dict) else []:
            uri = event.get("base-uri") if isinstance(event, dict) else None
            if event.get("event-type") in ESMOND_EVENT_TYPES and isinstance(uri, str):
                data[uri] = _get_json(session, urljoin(archive_url, uri), params, timeout_s)
    return json.dumps({"metadata": metadata, "data": data}).encode()


def _get_json(session: requests.Session, url: str, params: dict[str, str],
              timeout_s: float) -> Any:
    answer = session.get(url, params=params, timeout=timeout_s)
    answer.raise_for_status()
    return answer.json()


def pull_all(engine: Engine, settings: CollectorSettings,
             metrics: MetricsSettings | None = None,
             session: requests.Session | None = None) -> list[PullResult]:
    """Fetch every configured URL once and ingest what each serves.

    Returns one :class:`PullResult` per URL, in configuration order; a URL
    that cannot be read gets its error, and the others go on.
    """
    session = session or make_session(settings.http_retries)
    plan = ([(Source.FTS, u) for u in settings.fts_urls]
            + [(Source.PERFSONAR, u) for u in settings.esmond_urls]
            + [(Source.PERFSONAR, u) for u in settings.pscheduler_urls]
            + [(Source.XROOTD, u) for u in settings.xrootd_urls]
            + [(Source.NWS, u) for u in settings.nws_urls])
    esmond = set(settings.esmond_urls)
    results = []
    for source, url in plan:
        try:
            if url in esmond:
                body = fetch_esmond_bundle(session, url, settings.esmond_time_range_s,
                                           settings.http_timeout_s)
            else:
                answer = session.get(url, timeout=settings.http_timeout_s)
                answer.raise_for_status()
                body = answer.content
        except (requests.RequestException, ValueError) as exc:
            log.warning("pull of %s failed: %s", url, exc, extra={"url": url})
            results.append(PullResult(source.value, url, error=f"{type(exc).__name__}: {exc}"))
            continue
        results.append(PullResult(source.value, url, ingest(engine, source, body, metrics)))
    return results
