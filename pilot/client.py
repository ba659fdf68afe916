"""The pilot's side of the dispatcher's JSON API (``/api/v1/pilot/...``), over requests.

A refusal raises :class:`ServerRefused` carrying the server's own reason (the
``detail`` of its problem answer, PanDA's ``errorDialog``, or the text it
sent), so the pilot can say why it stopped in one line.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter, Retry

__all__ = ["DispatcherClient", "ServerRefused", "checked", "reason_of"]


class ServerRefused(requests.HTTPError):
    """The dispatcher answered an error status; ``status`` and the server's ``reason``."""

    def __init__(self, status: int, reason: str, url: str,
                 response: requests.Response | None = None) -> None:
        self.status, self.reason, self.url = status, reason, url
        super().__init__(f"the server refused ({status}): {reason}", response=response)


def reason_of(answer: requests.Response) -> str:
    """The reason an error answer gives, in one line: a problem's ``detail``, PanDA's
    ``errorDialog``, a ``detail`` string, else the start of the text."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("detail", "errorDialog", "message"):
            if isinstance(body.get(key), str) and body[key]:
                return " ".join(str(body[key]).split())
    text = " ".join(answer.text.split())[:300]
    return text or answer.reason or "no reason given"


def checked(answer: requests.Response) -> requests.Response:
    """``answer`` if it is no error; raises :class:`ServerRefused` with its reason."""
    if answer.status_code >= 400:
        raise ServerRefused(answer.status_code, reason_of(answer), answer.url, answer)
    return answer


class DispatcherClient:
    """Ask for work and report on it. Connection errors and 5xx answers are retried."""

    def __init__(self, server: str, timeout_s: float = 30.0, retries: int = 3,
                 session: requests.Session | None = None, token: str | None = None) -> None:
        self.server = server.rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        if token:  # the pilot's bearer token: the jobs it takes are its own
            self.session.headers["Authorization"] = f"Bearer {token}"
        adapter = HTTPAdapter(max_retries=Retry(
            total=retries, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504),
            allowed_methods=None, raise_on_status=False))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def acquire(self, queue: str, **offer: Any) -> dict[str, Any] | None:
        """A job for ``queue`` given what this node offers, or None when there is none."""
        answer = self.session.post(f"{self.server}/api/v1/pilot/jobs/acquire",
                                   json={"queue": queue, **offer}, timeout=self.timeout_s)
        checked(answer)
        job: dict[str, Any] | None = answer.json()["job"]
        return job

    def update(self, job_id: int, state: str, **fields: Any) -> str:
        """Report a state; returns the server's command (``NULL``, ``tobekilled``, ...)."""
        body = {"state": state, **{k: v for k, v in fields.items() if v is not None}}
        # files: [{"lfn", "bytes", "adler32"}] of the outputs written, with a final state
        answer = self.session.post(f"{self.server}/api/v1/pilot/jobs/{job_id}/update",
                                   json=body, timeout=self.timeout_s)
        checked(answer)
        command: str = answer.json()["command"]
        return command

    def event_ranges(self, job_id: int, n: int, pilot_id: str = "") -> list[dict[str, Any]]:
        """Up to ``n`` event ranges of the job, now held by this pilot (empty: none left)."""
        answer = self.session.post(f"{self.server}/api/v1/pilot/jobs/{job_id}/event-ranges",
                                   json={"n": n, "pilot_id": pilot_id}, timeout=self.timeout_s)
        checked(answer)
        ranges: list[dict[str, Any]] = answer.json()["ranges"]
        return ranges

    def report_ranges(self, reports: list[dict[str, Any]]) -> list[str | None]:
        """Report ranges ``{"range_id", "status"}``: finished, failed, or ready (given back)."""
        answer = self.session.post(f"{self.server}/api/v1/pilot/event-ranges/update",
                                   json=reports, timeout=self.timeout_s)
        checked(answer)
        results: list[str | None] = answer.json()["results"]
        return results

    def upload_log(self, job_id: int, text: str) -> None:
        """Send the job's log (the monitor shows it on the job's page)."""
        answer = self.session.post(f"{self.server}/api/v1/pilot/jobs/{job_id}/log",
                                   data=text.encode(), timeout=self.timeout_s,
                                   headers={"Content-Type": "text/plain; charset=utf-8"})
        checked(answer)

    def download(self, url: str, target: str) -> None:
        """Fetch ``url`` into the file ``target`` (a transformation script, an input)."""
        with self.session.get(url, stream=True, timeout=self.timeout_s) as answer:
            checked(answer)
            with open(target, "wb") as out:
                for chunk in answer.iter_content(1 << 20):
                    out.write(chunk)
