"""Text from outside, made storable: the same characters kept on both backends.

PostgreSQL refuses two things SQLite stores: the NUL character (U+0000) in
a text column, and a lone UTF-16 surrogate (U+D800..U+DFFF, which JSON's
``\\ud800`` escapes and a form's bad percent-escapes can produce) in any
UTF-8 text. So a value a client sends is either

- **free text** (a pilot's error diagnostic, its node and pilot id, a log
  tail): NULs are removed, lone surrogates become U+FFFD, and the text is
  cut to its column's length, so a pilot whose error message holds a NUL
  can still report its final state; or
- **a name** (a queue, a state, a label): it must hold no control
  character and no surrogate, or it is refused naming the field (400).

Both rules are the same whatever the backend, so a value stored on SQLite
is the value stored on PostgreSQL.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["DIAG_CHARS", "LOG_TAIL_CHARS", "Diagnostic", "LogTail", "Name", "ShortText",
           "check_name", "clean_text", "without_surrogates"]

DIAG_CHARS = 4000  # a job's stored error diagnostic
LOG_TAIL_CHARS = 16384  # the end of a pilot's log extracts kept with its job

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def clean_text(value: str, max_chars: int | None = None) -> str:
    """``value`` without NULs, lone surrogates replaced by U+FFFD, cut to ``max_chars``.

    >>> clean_text("stage-out failed\\x00 at \\udc80", 20)
    'stage-out failed at '
    >>> clean_text("ok \\udc80")
    'ok \\ufffd'
    """
    if "\x00" in value:
        value = value.replace("\x00", "")
    value = without_surrogates(value)
    return value if max_chars is None else value[:max_chars]


def without_surrogates(value: str) -> str:
    """``value`` with each lone surrogate replaced by U+FFFD: encodable as UTF-8.

    >>> without_surrogates("a\\udc80b")
    'a\\ufffdb'
    """
    return _SURROGATE.sub("\ufffd", value)


def check_name(value: str) -> str:
    """``value`` if it holds no control character or surrogate; else ValueError.

    >>> check_name("DESY-HH")
    'DESY-HH'
    >>> check_name("DESY\\x00HH")
    Traceback (most recent call last):
    ...
    ValueError: holds a control character (U+0000) at position 4
    """
    bad = _CONTROL.search(value)
    if bad is not None:
        raise ValueError(f"holds a control character (U+{ord(bad.group()):04X}) at position "
                         f"{bad.start()}")
    return value


# Free text of a short column (node, pilot id) and of an error diagnostic.
ShortText = Annotated[str, AfterValidator(partial(clean_text, max_chars=255))]
Diagnostic = Annotated[str, AfterValidator(partial(clean_text, max_chars=DIAG_CHARS))]
# A log's end matters most: the tail is kept.
LogTail = Annotated[str, AfterValidator(lambda v: clean_text(v)[-LOG_TAIL_CHARS:])]
Name = Annotated[str, AfterValidator(check_name)]
