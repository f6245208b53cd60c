"""Where pulsewire's log events go: the standard ``logging`` tree, as structured events.

Every module gets its logger here (:func:`get_logger`), and nowhere else. An event is a
stable name from :mod:`pulsewire.logevents` plus fields; it is handed to the stdlib logger
``pulsewire`` (or a child, or the logger the application passed as ``logger=``):

- an application that configures nothing sees nothing on stdout, and warnings and errors
  on stderr (Python's ``logging.lastResort``); ``logging.getLogger("pulsewire").setLevel()``
  and handlers work as for any library;
- the record's ``msg`` is the event dict, in the shape of structlog's
  ``ProcessorFormatter.wrap_for_formatter``, so a ``ProcessorFormatter`` receives the fields
  as structured data; every other formatter prints ``peer.dead peer=... reason=timeout``;
- an application that routes structlog through ``logging`` (its processors end with
  ``ProcessorFormatter.wrap_for_formatter``), and ``structlog.testing.capture_logs()``, see
  pulsewire's events pass through its structlog processors first, like its own events.

pulsewire never calls ``structlog.configure()``: the application owns the configuration.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TypeAlias, final

import structlog
from structlog.stdlib import ProcessorFormatter
from structlog.testing import LogCapture
from structlog.typing import BindableLogger

__all__ = ["LOGGER_NAME", "EventLogger", "LoggerLike", "Throttle", "get_logger"]

#: The root of pulsewire's loggers in the standard ``logging`` tree.
LOGGER_NAME = "pulsewire"

LoggerLike: TypeAlias = logging.Logger | logging.LoggerAdapter[Any] | BindableLogger
"""What ``logger=`` accepts: a stdlib ``Logger``, a ``LoggerAdapter`` (its ``extra`` joins
every event's fields), or a structlog logger (events go through it, as the application
configured structlog)."""

_METHODS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
}


class _Event(dict[str, Any]):
    """An event dict that prints as one readable line for formatters that are not
    structlog's (``ProcessorFormatter`` copies it into a plain dict)."""

    def __str__(self) -> str:
        fields = " ".join(
            f"{key}={value}" for key, value in self.items() if key not in ("event", "exc_info")
        )
        return f"{self['event']} {fields}" if fields else str(self["event"])


def _application_processors() -> list[Any] | None:
    """The application's structlog processors, if they hand events to ``logging`` (or a
    test captures them); else None: pulsewire then hands its events to ``logging`` itself."""
    processors: list[Any] = structlog.get_config()["processors"]
    if processors and (
        processors[-1] is ProcessorFormatter.wrap_for_formatter
        or isinstance(processors[-1], LogCapture)
    ):
        return processors
    return None


@final
class EventLogger:
    """Logs pulsewire's events, with fields, to one destination, with bound context."""

    __slots__ = ("_context", "_stdlib", "_structlog")

    def __init__(self, target: LoggerLike, context: dict[str, Any] | None = None) -> None:
        context = dict(context or {})
        while isinstance(target, logging.LoggerAdapter):
            context = {**(target.extra or {}), **context}
            target = target.logger
        self._context = context
        if isinstance(target, logging.Logger):
            self._stdlib: logging.Logger | None = target
            self._structlog: Any = None
        elif callable(getattr(target, "bind", None)):
            self._stdlib = None
            self._structlog = target.bind(**context) if context else target
        else:
            raise TypeError(
                "logger= takes a logging.Logger, a logging.LoggerAdapter or a structlog "
                f"logger, not {type(target).__name__}"
            )

    def bind(self, **context: Any) -> EventLogger:
        """A logger that adds ``context`` to every event's fields."""
        target: LoggerLike = self._stdlib if self._stdlib is not None else self._structlog
        return EventLogger(target, {**self._context, **context})

    def debug(self, event: str, **fields: Any) -> None:
        self.log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self.log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self.log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An ERROR with the exception being handled (call it from an ``except`` block)."""
        self.log(logging.ERROR, event, fields, exc_info=True)

    def log(
        self, level: int, event: str, fields: dict[str, Any], *, exc_info: bool = False
    ) -> None:
        method = _METHODS.get(level, "critical")
        if self._structlog is not None:
            if exc_info:
                fields = {**fields, "exc_info": True}
            getattr(self._structlog, method)(event, **fields)
            return
        logger = self._stdlib
        assert logger is not None
        if not logger.isEnabledFor(level):
            return  # levels first: a disabled event costs one cached check
        if self._context:
            fields = {**self._context, **fields}
        processors = _application_processors()
        if processors is not None:
            bound = structlog.wrap_logger(logger, processors, structlog.stdlib.BoundLogger)
            getattr(bound, method)(event, **({**fields, "exc_info": True} if exc_info else fields))
            return
        record = _Event(event=event, **fields)
        error = sys.exc_info() if exc_info else None
        if error is not None:
            record["exc_info"] = error  # resolved now: a formatter may run later, elsewhere
        logger.log(
            level,
            record,
            exc_info=error,
            extra={"_logger": logger, "_name": method},
            stacklevel=3,
        )


def get_logger(name: str = LOGGER_NAME) -> EventLogger:
    """pulsewire's logger ``name`` (``pulsewire`` or a child such as ``pulsewire.kernel``)."""
    return EventLogger(logging.getLogger(name))


def event_logger(logger: LoggerLike | None, default: EventLogger) -> EventLogger:
    """The :class:`EventLogger` for a ``logger=`` argument (``None``: ``default``)."""
    return default if logger is None else EventLogger(logger)


@final
class Throttle:
    """Bounds the rate of one kind of log line: ``burst`` lines per ``interval`` seconds.

    Under attack one event can happen thousands of times a second (a refused connection,
    a failed ``accept()``); the log gets the first few in full, then one line per interval
    that says how many were held back since the last line.
    """

    __slots__ = ("_clock", "_passed", "_window_start", "burst", "held_back", "interval")

    def __init__(
        self,
        interval: float = 10.0,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.burst = burst
        self._clock = clock
        self._window_start = -interval
        self._passed = 0
        self.held_back = 0  #: lines held back since the last one let through

    def allow(self) -> int | None:
        """``None``: hold this line back (it is counted). Otherwise log it, with the count
        this returns of the lines held back before it."""
        now = self._clock()
        if now - self._window_start >= self.interval:
            self._window_start = now
            self._passed = 0
        if self._passed < self.burst:
            self._passed += 1
            held, self.held_back = self.held_back, 0
            return held
        self.held_back += 1
        return None
