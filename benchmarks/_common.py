"""Helpers shared by the benchmarks: child processes, resource readings, loop probes, reports.

Nothing here knows about pulsewire. The pieces:

- resource readings of the *current* process: :func:`raise_nofile`, :func:`rss_bytes`,
  :func:`cpu_seconds`;
- :func:`quiet_structlog`: pulsewire's events to stderr, so that stdout stays the report's;
- in-loop probes that only record while ``active``: :class:`Samples` (a bounded list of
  floats), :class:`LoopLagProbe` (lateness of a periodic ``call_later`` timer),
  :class:`GcMonitor` (collections and pauses via ``gc.callbacks``);
- :class:`Child`: a worker process spoken to with one JSON object per line on its stdin and
  stdout, with a timeout on every read; every child is registered and killed (by its PID)
  on exit, on errors and on Ctrl-C (:func:`kill_children`, :func:`install_cleanup`);
- reports: :func:`summary`, :func:`markdown_table`; the one shape of a RESULTS.md
  section, :func:`claim_section` with :func:`measured_on` and :func:`machine`; and
  :func:`replace_section`, which rewrites one script's section of RESULTS.md.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import json
import math
import os
import platform
import resource
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "RESULTS",
    "RESULTS_HEADER",
    "Child",
    "GcMonitor",
    "LoopLagProbe",
    "Samples",
    "WorkerError",
    "claim_section",
    "cpu_seconds",
    "emit",
    "git_revision",
    "install_cleanup",
    "kill_children",
    "loop_factory",
    "machine",
    "machine_busy_pct",
    "machine_busy_seconds",
    "markdown_table",
    "measured_on",
    "median",
    "percentile",
    "quiet_structlog",
    "raise_nofile",
    "replace_section",
    "rss_bytes",
    "summary",
    "versions",
]

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------- this process


def raise_nofile(wanted: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to ``wanted`` (at most the hard limit); return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft, hard


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


def cpu_seconds() -> float:
    """User + system CPU time consumed by this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds all processors have spent busy since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def machine_busy_pct(seconds: float) -> float:
    """Percent of one core the whole machine keeps busy, measured over ``seconds``."""
    before = machine_busy_seconds()
    time.sleep(seconds)
    return 100 * (machine_busy_seconds() - before) / seconds


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop constructor for ``"asyncio"`` or ``"uvloop"``."""
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    raise ValueError(f"unknown loop {name!r}: use asyncio or uvloop")


def quiet_structlog(level: int) -> None:
    """Print pulsewire's log events at ``level`` and above to stderr, drop the rest:
    stdout carries the report (and, in a child, its answers to the parent).

    pulsewire hands its events to the ``logging`` logger ``pulsewire``; structlog is
    configured too, for older builds that logged through its configuration.
    """
    import logging

    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    logger = logging.getLogger("pulsewire")
    logger.addHandler(logging.StreamHandler(sys.stderr))
    logger.setLevel(level)
    logger.propagate = False


def emit(message: dict[str, Any], stream: TextIO = sys.stdout) -> None:
    """Write one JSON line for the parent (a worker's only way of answering)."""
    stream.write(json.dumps(message) + "\n")
    stream.flush()


# ---------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; ``nan`` for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p99, max and count of ``values``."""
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
        "count": float(len(values)),
    }


def median(values: Iterable[float | None]) -> float:
    """Median of the finite values; ``nan`` when there are none."""
    finite = sorted(v for v in values if v is not None and math.isfinite(v))
    if not finite:
        return math.nan
    middle = len(finite) // 2
    if len(finite) % 2:
        return finite[middle]
    return (finite[middle - 1] + finite[middle]) / 2


# ---------------------------------------------------------------- in-loop probes


class Samples:
    """A bounded list of floats that records only while ``active``."""

    __slots__ = ("active", "cap", "values")

    def __init__(self, cap: int = 1_000_000) -> None:
        self.active = False
        self.cap = cap
        self.values: list[float] = []

    def add(self, value: float) -> None:
        if self.active and len(self.values) < self.cap:
            self.values.append(value)

    def start(self) -> None:
        self.values = []
        self.active = True

    def stop(self) -> None:
        self.active = False


class LoopLagProbe:
    """A timer that re-arms itself every ``period`` s and records how late each firing is.

    Lateness is measured on ``time.perf_counter`` against the delay asked of
    ``loop.call_later``, so it does not depend on the loop's own clock resolution (uvloop's
    ``loop.time()`` is in whole milliseconds). Negative values (a loop that fires a timer a
    fraction of a millisecond early) are recorded as 0.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float = 0.01) -> None:
        self._loop = loop
        self._period = period
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self.samples = Samples()

    def start(self) -> None:
        self._arm()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self) -> None:
        self._due = time.perf_counter() + self._period
        self._handle = self._loop.call_later(self._period, self._fire)

    def _fire(self) -> None:
        self.samples.add(max(0.0, time.perf_counter() - self._due))
        self._arm()


class GcMonitor:
    """Counts collections per generation and times their pauses, via ``gc.callbacks``."""

    def __init__(self) -> None:
        self.active = False
        self._started = 0.0
        self.collections = [0, 0, 0]
        self.max_pause = [0.0, 0.0, 0.0]
        self.total_pause = 0.0

    def install(self) -> None:
        gc.callbacks.append(self._callback)

    def start(self) -> None:
        self.collections = [0, 0, 0]
        self.max_pause = [0.0, 0.0, 0.0]
        self.total_pause = 0.0
        self.active = True

    def stop(self) -> None:
        self.active = False

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        if not self.active:
            return
        pause = time.perf_counter() - self._started
        generation = info["generation"]
        self.collections[generation] += 1
        self.total_pause += pause
        if pause > self.max_pause[generation]:
            self.max_pause[generation] = pause

    def report(self) -> dict[str, Any]:
        return {
            "collections": list(self.collections),
            "max_pause": max(self.max_pause),
            "max_pause_gen2": self.max_pause[2],
            "total_pause": self.total_pause,
        }


# ---------------------------------------------------------------- child processes


class WorkerError(RuntimeError):
    """A worker died, answered garbage, or did not answer in time."""


_children: list[Child] = []
_children_lock = threading.Lock()


class Child:
    """A worker process answering one JSON line per command. Registered for cleanup."""

    def __init__(self, argv: list[str], label: str) -> None:
        self.label = label
        self._stderr = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (closed in _close)
        self._pending = b""
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            bufsize=0,
        )
        with _children_lock:
            _children.append(self)

    @property
    def pid(self) -> int:
        return self._process.pid

    def send(self, command: dict[str, Any]) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write((json.dumps(command) + "\n").encode())
        except BrokenPipeError:
            raise WorkerError(f"{self.label} exited early{self._stderr_tail()}") from None

    def receive(self, timeout: float) -> dict[str, Any]:
        """The next JSON line from the worker; raise :class:`WorkerError` after ``timeout``."""
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerError(f"{self.label}: no answer within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise WorkerError(f"{self.label} exited early{self._stderr_tail()}")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        if message.get("event") == "error":
            raise WorkerError(f"{self.label}: {message.get('error')}")
        return message

    def request(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(command)
        return self.receive(timeout)

    def stop(self, grace: float = 3.0) -> None:
        """Ask the worker to quit; kill it (by PID) if it is still there after ``grace``."""
        if self._process.poll() is None:
            with contextlib.suppress(OSError, WorkerError):
                self.send({"cmd": "quit"})
            try:
                self._process.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()

    def kill(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)
        self._close()

    def _close(self) -> None:
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()
        with _children_lock:
            if self in _children:
                _children.remove(self)

    def _stderr_tail(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._process.wait(2)
        try:
            self._stderr.seek(0)
            tail = self._stderr.read()[-2000:].decode(errors="replace").strip()
        except (OSError, ValueError):
            tail = ""
        code = self._process.returncode
        return f" (exit code {code}): {tail}" if tail else f" (exit code {code})"


def kill_children() -> None:
    """Kill every worker still registered, each by its own PID."""
    with _children_lock:
        children = list(_children)
    for child in children:
        child.kill()


def install_cleanup() -> None:
    """Kill the workers at exit; SIGTERM and Ctrl-C (SIGINT) end the run in order."""
    atexit.register(kill_children)

    def on_sigterm(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it


# ---------------------------------------------------------------- reports

RESULTS = Path(__file__).with_name("RESULTS.md")
RESULTS_HEADER = "# pulsewire benchmark results"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def claim_section(
    claim: str,
    table: str,
    findings: Sequence[str],
    *,
    measured: str,
    command: str,
    how: str,
) -> str:
    """The body of a RESULTS.md section, the same for every script: what is claimed, one
    table, the findings (ratios against the baseline measured in the same run, targets),
    when and where it was measured, and the command that measured it."""
    lines = [f"**Claim:** {claim}", "", table, ""]
    lines += [f"- {finding}" for finding in findings]
    lines += [f"- Measured {measured}.", f"- Command: `{command}` ({how})."]
    return "\n".join(lines)


def measured_on(started: datetime, revision: str, packages: Sequence[str] = ()) -> str:
    """``2026-12-05 10:00 UTC, commit abc1234, <machine>, Python 3.11.7, uvloop 0.23.0``."""
    found = versions()
    named = "".join(f", {name} {found[name]}" for name in packages)
    return f"{started:%Y-%m-%d %H:%M} UTC, {revision}, {machine()}, Python {found['python']}{named}"


def machine() -> str:
    """``Linux 6.18.44 x86_64, 2 CPUs (AMD EPYC)``: enough to tell two machines apart."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        model = next(
            (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
            "",
        )
    release = platform.release().split("-")[0]
    cpus = f"{os.cpu_count()} CPUs" + (f" ({model})" if model else "")
    return f"{platform.system()} {release} {platform.machine()}, {cpus}"


def replace_section(path: Path, heading: str, body: str, file_header: str = RESULTS_HEADER) -> None:
    """Rewrite the section of ``path`` with ``heading``'s key (created with ``file_header``).

    A section runs from its ``## `` heading to the next one or the end of the file; its key
    is the heading up to the first colon (``## bench_idle: idle cost at scale`` has the key
    ``bench_idle``), so a script that renames its claim still replaces its own section.
    The other sections are left as they are.
    """
    text = path.read_text() if path.exists() else file_header.rstrip() + "\n"
    lines = text.splitlines()
    new_section = [f"## {heading}", "", *body.strip().splitlines(), ""]
    starts = [
        i for i, line in enumerate(lines) if _section_key(line) == _section_key(f"## {heading}")
    ]
    if starts:
        start = starts[0]
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        lines[start:end] = new_section
    else:
        if lines and lines[-1].strip():
            lines.append("")
        lines += new_section
    path.write_text("\n".join(lines).rstrip() + "\n")


def _section_key(line: str) -> str | None:
    return line[3:].split(":", 1)[0].strip() if line.startswith("## ") else None


def git_revision(directory: Path, watched: str = ".") -> str:
    """``commit abc1234``, plus ``+ uncommitted changes in <watched>`` when there are some."""

    def git(*argv: str) -> str:
        return subprocess.run(
            ["git", *argv], cwd=directory, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        top = git("rev-parse", "--show-toplevel")
        dirty = git("status", "--porcelain", "--", str(Path(top) / watched))
    except (OSError, subprocess.SubprocessError):
        return "revision unknown"
    if not commit:
        return "revision unknown"
    return f"commit {commit}" + (f" + uncommitted changes in {watched}/" if dirty else "")


def versions() -> dict[str, str]:
    """Versions of Python and of the packages the benchmarks compare."""
    found = {"python": platform.python_version()}
    for name in ("pulsewire", "uvloop", "websockets", "msgspec"):
        try:
            module = __import__(name)
            found[name] = str(getattr(module, "__version__", "?"))
        except ImportError:
            found[name] = "not installed"
    return found
