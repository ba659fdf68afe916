"""The monitor's templates, the filters they print numbers and times with, its error page.

Every page prints times with ``utc`` (ISO 8601, ``Z``, whole seconds), sizes
with ``bytes`` (kB, MB, GB) and durations with ``seconds``
(``netbroker.common.units``), so a time looks the same on every page. An error
met while serving a page (an unknown id, a bad filter) is a page too, with
the status, title and detail the JSON API would give (``error_page``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from netbroker.common.units import human_bytes, human_seconds, iso_utc

if TYPE_CHECKING:
    from netbroker.api.errors import Problem

__all__ = ["STATIC_DIR", "error_page", "render", "templates"]

STATIC_DIR = Path(__file__).with_name("static")
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


def _number(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; ``-`` for None or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "1" if value else "0"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _percent(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.0f}%"


templates.env.filters.update(utc=iso_utc, bytes=human_bytes, seconds=human_seconds,
                             num=_number, percent=_percent)


def render(request: Request, name: str, status_code: int = 200, **context: Any
           ) -> HTMLResponse:
    """Render template ``name`` (its stem is the page's key for the navigation bar)."""
    return templates.TemplateResponse(request, name, {"page": name.removesuffix(".html"),
                                                      **context}, status_code=status_code)


def error_page(request: Request, problem: Problem) -> HTMLResponse:
    """An error as a monitor page: status, title, detail, the fields it names."""
    response = render(request, "error.html", problem.status, problem=problem,
                      fields=problem.extra.get("fields", []),
                      allowed=problem.extra.get("allowed", []))
    for key, value in problem.headers.items():
        response.headers[key] = value
    return response
