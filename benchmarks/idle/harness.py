"""The bench_idle orchestrator: process pairs, quiet waits, plans, builds compared.

For every measurement it waits (within one budget for the whole run) for the machine to
be quiet, starts a server and a client worker (:mod:`idle.worker`) on a fresh 127.0.0.x
address (no 4-tuple reused from TIME_WAIT), has the client open N connections, warms up,
measures its windows and stops both. Every wait on a worker is bounded; every worker is
registered with :class:`_common.Child` and killed by its PID on errors, on exit and on
Ctrl-C; a failed measurement is recorded and the run goes on.

A :class:`Variant` names the side a worker holds and the interpreter that runs it: the
variants given to ``--compare LABEL=PYTHON`` are ``pulsewire@LABEL``, the pulsewire side
run by another interpreter (a venv with another build of pulsewire installed).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as common

ENTRY_POINT = Path(__file__).resolve().parent.parent / "bench_idle.py"
#: Other processes using more than this much of one core make the machine "busy".
BUSY_PCT = 40.0
STARTUP_TIMEOUT = 30.0  #: seconds for a worker to say it is ready
COMMAND_TIMEOUT = 60.0  #: seconds for a worker to answer begin / end


@dataclass(frozen=True)
class Variant:
    """What a row of the report measures: a side, run by an interpreter."""

    name: str  #: ``pulsewire``, ``floor``, ... or ``pulsewire@LABEL``
    side: str  #: the side in :data:`idle.variants.SIDES`
    python: str = sys.executable

    @classmethod
    def compared(cls, label: str, python: str) -> Variant:
        """The pulsewire side run by another build's interpreter."""
        return cls(f"pulsewire@{label}", "pulsewire", python)


@dataclass(frozen=True)
class Spec:
    """One process pair: what it runs, and which windows it measures."""

    n: int
    variant: Variant
    loop: str
    run: int  #: index of the first window measured
    windows: int  #: windows measured back to back by this process pair


@dataclass(frozen=True)
class Options:
    window: float
    warmup: float
    batch: int
    optimize: bool  #: run the workers with ``python -O``
    quiet_wait: QuietWait  #: waits for other processes to calm down
    profile: Path | None  #: dump a cProfile of each server window here


class QuietWait:
    """Waits for other processes to calm down, within one budget for the whole run."""

    def __init__(self, budget: float) -> None:
        self._remaining = budget
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """Wait until others use < BUSY_PCT of a core (or the budget is spent); return it."""
        while True:
            busy = common.machine_busy_pct(0.5)
            with self._lock:
                if busy < BUSY_PCT or self._remaining <= 0:
                    return busy
                self._remaining -= 1.5
            time.sleep(1.0)


def plan(
    ns: Sequence[int], variants: Sequence[Variant], loops: Sequence[str], runs: int, fresh: bool
) -> list[Spec]:
    """Default: one process pair measures all ``runs`` windows back to back. ``fresh``: a
    new pair per run, round by round (every variant and loop once per round), so that a
    change in the machine's speed hits every variant of a round alike."""
    if not fresh:
        return [Spec(n, v, loop, 0, runs) for n in ns for loop in loops for v in variants]
    return [
        Spec(n, variant, loop, run, 1)
        for n in ns
        for run in range(runs)
        for loop in loops
        for variant in variants
    ]


def run_all(specs: Sequence[Spec], options: Options, parallel: int = 1) -> list[dict[str, Any]]:
    """Measure every spec (``parallel`` at a time); a failure is recorded, not fatal."""

    def one(spec: Spec) -> list[dict[str, Any]]:
        started = time.monotonic()
        try:
            results = measure(spec, options)
            status = "ok"
        except common.WorkerError as error:
            results = [{**_spec_fields(spec), "run": spec.run, "error": str(error)}]
            status = "FAILED: " + last_line(str(error))
        took = time.monotonic() - started
        runs = f"run {spec.run + 1}" + (f"-{spec.run + spec.windows}" if spec.windows > 1 else "")
        name, n = spec.variant.name, spec.n
        print(
            f"  {name:<14} {spec.loop:<7} N={n:<6} {runs}: {took:5.1f} s  {status}",
            file=sys.stderr,
            flush=True,
        )
        return results

    try:
        if parallel <= 1:
            batches = [one(spec) for spec in specs]
        else:
            with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
                batches = list(pool.map(one, specs))
    finally:
        common.kill_children()
    return [result for batch in batches for result in batch]


def measure(spec: Spec, options: Options) -> list[dict[str, Any]]:
    """Start both workers, connect, warm up, measure ``spec.windows`` windows, stop."""
    busy_before = options.quiet_wait()
    host = _next_host()
    label = f"{spec.variant.name}/{spec.loop}/N={spec.n}"
    server = common.Child(_worker_argv("server", spec, host, options), f"{label} server")
    client: common.Child | None = None
    try:
        ready = server.receive(timeout=STARTUP_TIMEOUT)
        client = common.Child(_worker_argv("client", spec, host, options), f"{label} client")
        client.receive(timeout=STARTUP_TIMEOUT)
        connected = _connect(server, client, spec, host, ready["port"], options)
        for child in (server, client):
            child.request({"cmd": "heartbeat"}, timeout=STARTUP_TIMEOUT)
        time.sleep(options.warmup)
        windows = [
            _window(server, client, options, _profile_path(options, spec, index))
            for index in range(spec.windows)
        ]
    finally:
        if client is not None:
            client.stop()
        server.stop()
    fields = {
        **_spec_fields(spec),
        "connected": connected,
        "nofile_hard": ready["nofile_hard"],
        "busy_before": busy_before,
    }
    last = len(windows) - 1
    return [
        {**fields, "run": spec.run + index, "first": index == 0, "last": index == last, **window}
        for index, window in enumerate(windows)
    ]


def describe_build(python: str) -> str:
    """The pulsewire an interpreter imports: version, source, commit, compiled modules."""
    probe = "import pulsewire; print(pulsewire.__version__); print(pulsewire.__file__)"
    try:
        found = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, timeout=60, check=True
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError) as error:
        raise SystemExit(f"{python}: cannot import pulsewire ({error})") from None
    version, package = found[0], Path(found[1]).parent
    extensions = sorted(p.name.split(".")[0] for p in package.rglob("*.so"))
    compiled = f", compiled: {', '.join(extensions)}" if extensions else ", pure Python"
    return f"pulsewire {version} ({common.git_revision(package, 'src')}{compiled}) from {package}"


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:300] if lines else "?"


# ---------------------------------------------------------------- internals

_hosts = itertools.count()
_hosts_lock = threading.Lock()


def _next_host() -> str:
    """A fresh 127.0.0.x per measurement: no 4-tuple is reused while in TIME_WAIT."""
    with _hosts_lock:
        return f"127.0.0.{2 + next(_hosts) % 250}"


def _spec_fields(spec: Spec) -> dict[str, Any]:
    return {"n": spec.n, "variant": spec.variant.name, "loop": spec.loop, **_build(spec)}


def _build(spec: Spec) -> dict[str, Any]:
    return {"python": spec.variant.python} if spec.variant.python != sys.executable else {}


def _worker_argv(role: str, spec: Spec, host: str, options: Options) -> list[str]:
    lifetime = 120 + options.warmup + spec.windows * (options.window + 5) + spec.n / 50
    return [
        spec.variant.python,
        *(["-O"] if options.optimize else []),
        str(ENTRY_POINT),
        *("--worker", role, "--variant", spec.variant.side, "--loop", spec.loop),
        *("--n", str(spec.n), "--host", host, "--max-lifetime", str(round(lifetime))),
    ]


def _connect(
    server: common.Child, client: common.Child, spec: Spec, host: str, port: int, options: Options
) -> dict[str, Any]:
    """Open the N connections; raise unless all of them were opened and accepted."""
    timeout = 30 + spec.n / 100
    command = {"cmd": "connect", "host": host, "port": port, "n": spec.n}
    connected = client.request(
        {**command, "batch": options.batch, "timeout": timeout}, timeout=timeout + 30
    )
    if connected["ok"] < spec.n:
        errors = "; ".join(connected["errors"]) or "timed out"
        raise common.WorkerError(f"only {connected['ok']} of {spec.n} connected: {errors}")
    accepted = server.request({"cmd": "wait", "n": spec.n, "timeout": 20}, 40)["count"]
    if accepted < spec.n:
        raise common.WorkerError(f"the server has only {accepted} of {spec.n} connections")
    return connected


def _profile_path(options: Options, spec: Spec, index: int) -> str | None:
    if options.profile is None:
        return None
    options.profile.mkdir(parents=True, exist_ok=True)
    name = f"{spec.variant.name}-{spec.loop}-n{spec.n}-run{spec.run + index + 1}.pstats"
    return str(options.profile / name)


def _window(
    server: common.Child, client: common.Child, options: Options, profile: str | None
) -> dict[str, Any]:
    """Measure one window on both sides, and what other processes used meanwhile."""
    server.send({"cmd": "begin", "profile": profile})
    client.send({"cmd": "begin"})
    for child in (server, client):
        child.receive(timeout=COMMAND_TIMEOUT)
    busy = common.machine_busy_seconds()
    started = time.monotonic()
    time.sleep(options.window)
    busy = common.machine_busy_seconds() - busy
    elapsed = time.monotonic() - started
    for child in (server, client):
        child.send({"cmd": "end"})
    srv, cli = server.receive(COMMAND_TIMEOUT), client.receive(COMMAND_TIMEOUT)
    ours = srv["cpu"] / srv["window"] + cli["cpu"] / cli["window"]
    return {"server": srv, "client": cli, "others_pct": 100 * max(0.0, busy / elapsed - ours)}
