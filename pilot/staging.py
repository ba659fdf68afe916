"""Stage-in and stage-out: a copytool per URL scheme, every copy checked by Adler-32.

The dispatcher gives each input file its sources, best first, and each
output its destination URL. Copytools:

- ``file://`` URLs and plain paths: a POSIX copy (shared file systems);
- ``http://``, ``https://``, ``dav://``, ``davs://``: GET to read, PUT to
  write (WebDAV is HTTP; ``davs`` is read as ``https``);
- ``root://``, ``xroot://``: ``xrdcp``, when it is on the PATH.

An input is tried from each source in turn until one copy has the size and
the Adler-32 the catalogue gives; a bad copy is removed before the next
try. An output is measured (size, Adler-32) before it is written, and the
measurement goes back to the dispatcher with the final state. Standard
library and requests only.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

__all__ = [
    "MISSING_OUTPUT",
    "STAGEIN_FAILED",
    "STAGEOUT_FAILED",
    "StageError",
    "adler32_of",
    "make_log_tarball",
    "stage_in",
    "stage_out",
]

from pilot.payload import STAGEIN_FAILED

STAGEOUT_FAILED = 1137
MISSING_OUTPUT = 1165
CHUNK = 1 << 20


class StageError(Exception):
    """A file could not be staged; ``code`` is the pilot error code to report."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


def adler32_of(path: Path) -> str:
    """The Adler-32 of a file, as 8 lower-case hex digits (Rucio's form).

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile(delete=False) as f:
    ...     _ = f.write(b"Wikipedia")
    >>> adler32_of(Path(f.name)); os.unlink(f.name)
    '11e60398'
    """
    value = 1
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"davs": "https", "dav": "http"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, *parts[1:]))


def _local_path(url: str) -> Path:
    return Path(urlsplit(url).path) if url.startswith("file://") else Path(url)


def _fetch(url: str, target: Path, session: requests.Session, timeout_s: float) -> None:
    scheme = urlsplit(url).scheme
    if scheme in ("http", "https", "dav", "davs"):
        with session.get(_http_url(url), stream=True, timeout=timeout_s) as answer:
            answer.raise_for_status()
            with target.open("wb") as out:
                for chunk in answer.iter_content(CHUNK):
                    out.write(chunk)
    elif scheme in ("root", "xroot"):
        _xrdcp(url, str(target), timeout_s)
    elif scheme in ("file", ""):
        shutil.copyfile(_local_path(url), target)
    else:
        raise OSError(f"no copytool for {scheme}://")


def _send(source: Path, url: str, session: requests.Session, timeout_s: float) -> None:
    scheme = urlsplit(url).scheme
    if scheme in ("http", "https", "dav", "davs"):
        with source.open("rb") as body:
            answer = session.put(_http_url(url), data=body, timeout=timeout_s)
        answer.raise_for_status()
    elif scheme in ("root", "xroot"):
        _xrdcp(str(source), url, timeout_s)
    elif scheme in ("file", ""):
        target = _local_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    else:
        raise OSError(f"no copytool for {scheme}://")


def _xrdcp(src: str, dst: str, timeout_s: float) -> None:
    xrdcp = shutil.which("xrdcp")
    if xrdcp is None:
        raise OSError("xrdcp is not installed")
    done = subprocess.run([xrdcp, "--force", "--nopbar", src, dst], capture_output=True,
                          timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise OSError(f"xrdcp exited {done.returncode}: {done.stderr.decode()[-300:]}")


def stage_in(inputs: Iterable[dict[str, Any]], jobdir: Path, session: requests.Session,
             timeout_s: float = 300.0) -> list[str]:
    """Copy every input into ``jobdir`` under its LFN; returns the URLs used.

    Raises ``StageError(STAGEIN_FAILED)`` naming the file and why each source
    failed, when no source gives a good copy.
    """
    used = []
    for item in inputs:
        target = jobdir / item["lfn"]
        problems = []
        for source in item.get("sources", []):
            url = source["url"]
            try:
                _fetch(url, target, session, timeout_s)
                problem = _verify(target, item)
            except (OSError, requests.RequestException, subprocess.SubprocessError) as exc:
                problem = str(exc)
            if problem is None:
                used.append(url)
                break
            target.unlink(missing_ok=True)
            problems.append(f"{source.get('endpoint') or url}: {problem}")
        else:
            why = "; ".join(problems) or "no source"
            raise StageError(STAGEIN_FAILED, f"stage-in of {item['lfn']} failed: {why}")
    return used


def _verify(path: Path, item: dict[str, Any]) -> str | None:
    """None when the copy matches the catalogue's size and Adler-32, else why not."""
    size = path.stat().st_size
    if item.get("bytes") is not None and size != item["bytes"]:
        return f"size {size} != {item['bytes']}"
    if item.get("adler32"):
        got = adler32_of(path)
        if got != item["adler32"].lower().zfill(8):
            return f"adler32 {got} != {item['adler32']}"
    return None


def make_log_tarball(jobdir: Path, lfn: str, names: Iterable[str] = (
        "payload.stdout", "payload.stderr")) -> Path:
    """Pack the payload's stdout and stderr into the job's log file (a gzipped tar)."""
    target = jobdir / lfn
    with tarfile.open(target, "w:gz") as tar:
        for name in names:
            if (jobdir / name).exists():
                tar.add(jobdir / name, arcname=name)
    return target


def stage_out(outputs: Iterable[dict[str, Any]], jobdir: Path, session: requests.Session,
              timeout_s: float = 300.0) -> list[dict[str, Any]]:
    """Write every output found in ``jobdir`` to its URL; returns what was written
    (``lfn, bytes, adler32``).

    Raises ``StageError`` with ``MISSING_OUTPUT`` when the payload did not
    produce a file, ``STAGEOUT_FAILED`` when a copy fails.
    """
    written = []
    for item in outputs:
        path = jobdir / item["lfn"]
        if not path.is_file():
            raise StageError(MISSING_OUTPUT, f"output {item['lfn']} was not produced")
        if not item.get("url"):
            raise StageError(STAGEOUT_FAILED, f"no destination for {item['lfn']}")
        report = {"lfn": item["lfn"], "bytes": path.stat().st_size, "adler32": adler32_of(path)}
        try:
            _send(path, item["url"], session, timeout_s)
        except (OSError, requests.RequestException, subprocess.SubprocessError) as exc:
            raise StageError(STAGEOUT_FAILED,
                             f"stage-out of {item['lfn']} to {item['url']} failed: {exc}") from None
        written.append(report)
    return written
