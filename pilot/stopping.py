"""How the pilot's commands stop: SIGTERM and SIGINT set an event the command's loop watches."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

__all__ = ["stop_on_signals"]


def stop_on_signals(log: logging.Logger, level: int, message: str) -> threading.Event:
    """An event that SIGTERM and SIGINT set, each logged at ``level`` as ``message % signum``.

    Installs the handlers, so only the main thread may call it.
    """
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.log(level, message, signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop
