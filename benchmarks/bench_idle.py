"""bench_idle: what N idle connections with a 1 s heartbeat cost, pulsewire vs baselines.

For every (N, variant, loop) a **server process** and a **client process** (this file,
run with ``--worker``) are started; the client opens N connections over loopback, 200 at
a time; both sides then sit idle but for their heartbeats and, after a warm-up, measure
``--runs`` steady-state windows back to back (``--fresh``: a new process pair for every
run instead, round by round). The pieces live in ``benchmarks/idle/``: the variants
(``variants.py``), the worker process (``worker.py``), the orchestrator (``harness.py``:
bounded waits, workers killed by PID, quiet waits), the figures (``figures.py``) and the
reports (``report.py``).

Variants (same N, same process layout, both sides, 1 s heartbeat, 3 s timeout):

- ``none``: asyncio streams, connections just held (no heartbeat): the memory baseline;
- ``tasks``: streams with a hand-written heartbeat task and reader task per connection;
- ``floor``: ``asyncio.BufferedProtocol`` and one loop-wide ticker: the cheapest pure-Python
  heartbeat (the server only answers);
- ``websockets``: ``websockets.asyncio`` keepalive, ``ping_interval=1``;
- ``pulsewire``: ``Policy(interval=1.0, timeout=3.0)`` on both sides, through the public API;
- ``pulsewire@LABEL`` (``--compare LABEL=PYTHON``, repeatable): the same pulsewire side run
  by another interpreter, a venv with another build of pulsewire installed. It implies
  ``--fresh``: every round measures each variant once, back to back, and the report gives
  its ratio to ``pulsewire`` and to the floor, round by round.

Measured over each window, in each worker (see ``idle/worker.py``): CPU (``getrusage``,
without the evidence sampler's own), as µs per connection-second and µs per PING/PONG
exchange (server + client CPU / PONGs received); RSS per connection over the process's
idle RSS; heartbeats per connection-second; the longest silence a once-a-second sampler
saw (it must stay well below 2 s) and the suspicions it saw; deadline lateness (pulsewire:
its loop-wide scheduler's, via ``on_fire`` and ``max_lateness``; tasks: each
``asyncio.sleep(1)`` wake-up; floor: each ticker tick); loop lag (a 10 ms ``call_later``
probe); connections lost to a heartbeat timeout (false deaths: must be 0) and closed for
any reason; GC collections, pauses and object counts; and what the rest of the machine
used meanwhile. Before each process pair the orchestrator waits (within ``--quiet-wait``
seconds in all) for the machine to be quiet.

Medians over runs (deaths: totals); ratios are taken round by round and their median
reported; the targets are checked at the largest N. The full report goes to standard
output; the ``## bench_idle`` section of RESULTS.md gets the short one.

    python benchmarks/bench_idle.py --smoke     # N=50, 2 s, variants side by side: ~7 s
    python benchmarks/bench_idle.py             # N=1,000 and 10,000, both loops: ~8 min
    python benchmarks/bench_idle.py --n 10000 --window 20 --runs 5 --variants floor,pulsewire
    python benchmarks/bench_idle.py --n 10000 --variants floor,pulsewire --runs 5 \\
        --compare base=/work/base-32cc447/.venv/bin/python
    python benchmarks/bench_idle.py --n 10000 --variants pulsewire --runs 1 --profile prof/
"""

from __future__ import annotations

import argparse
import io
import json
import pstats
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common as common
from idle import figures, harness, report, variants
from idle.harness import Variant
from idle.worker import run_worker

VARIANTS = tuple(variants.SIDES)
#: ``anyio`` (pulsewire.anyio on asyncio) is measured by bench_anyio_idle.py; on request here.
DEFAULT_VARIANTS = tuple(name for name in VARIANTS if name != "anyio")
HEARTBEAT_VARIANTS = ("tasks", "floor", "websockets", "pulsewire", "anyio")
#: ``auto``: pulsewire with ``Policy.auto()``, reported as another pulsewire build would be.
AUTO_BUILD = figures.AUTO_BUILD
LOOPS = ("asyncio", "uvloop")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="1000,10000", help="connection counts, comma-separated")
    parser.add_argument("--window", type=float, default=4.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds after connecting")
    parser.add_argument("--runs", type=int, default=3, help="runs per row (median shown)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=",".join(VARIANTS))
    parser.add_argument("--loops", default=",".join(LOOPS), help="asyncio,uvloop")
    parser.add_argument("--batch", type=int, default=200, help="concurrent connects")
    parser.add_argument("--fresh", action="store_true", help="new processes for every run")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="LABEL=PYTHON",
        help="also measure pulsewire as run by PYTHON (another build), as pulsewire@LABEL; "
        "repeatable; implies --fresh",
    )
    parser.add_argument(
        "-O", "--optimize", action="store_true", help="run the workers with python -O"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="seconds, in all, to wait before process pairs for other load to drop",
    )
    parser.add_argument("--profile", type=Path, help="cProfile each server window into here")
    parser.add_argument("--smoke", action="store_true", help="N=50, 2 s, asyncio, side by side")
    parser.add_argument(
        "--results", type=Path, default=common.RESULTS, help="markdown file to update"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--json", type=Path, help="also save the raw measurements here")
    parser.add_argument(
        "--from-json", type=Path, help="measure nothing: report a run saved with --json"
    )
    worker = parser.add_argument_group("internal (worker processes)")
    worker.add_argument("--worker", choices=("server", "client"), help=argparse.SUPPRESS)
    worker.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    worker.add_argument("--loop", choices=LOOPS, help=argparse.SUPPRESS)
    worker.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    worker.add_argument("--max-lifetime", type=float, default=600, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.variant_list = _variants(args.variants, args.compare)
    args.fresh = args.fresh or bool(args.compare)
    if args.smoke:
        args.n, args.window, args.warmup, args.runs = "50", 2.0, 1.0, 1
        args.loops, args.no_write = "asyncio", True
        args.quiet_wait = 0.0  # the variants run side by side: they are the load
    return args


def _split(text: str, allowed: Sequence[str] | None = None) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = set(items) - set(allowed if allowed is not None else items)
    if unknown:
        raise SystemExit(f"unknown: {', '.join(sorted(unknown))}")
    return items


def _variants(names: str, compare: Sequence[str]) -> list[Variant]:
    """The ``--variants`` sides, then one ``pulsewire@LABEL`` per ``--compare``."""
    chosen = [
        Variant(AUTO_BUILD, name) if name == "auto" else Variant(name, name)
        for name in _split(names, VARIANTS)
    ]
    for item in compare:
        label, _, python = item.partition("=")
        if not label or "@" in label or not python:
            raise SystemExit(f"--compare {item!r}: expected LABEL=/path/to/python")
        chosen.append(Variant.compared(label, python))
    given = [variant.name for variant in chosen]
    if len(set(given)) < len(given):
        raise SystemExit(f"each variant once: {', '.join(given)}")
    return chosen


def _facts(args: argparse.Namespace, saved: dict[str, Any]) -> report.RunFacts:
    settings = (
        f"{args.runs} window(s) of {args.window:g} s after {args.warmup:g} s warm-up, "
        + ("a new process pair per round, variants interleaved" if args.fresh else "back to back")
        + (", workers under python -O" if args.optimize else "")
    )
    return report.RunFacts(
        command=saved["argv"],
        started=datetime.fromisoformat(saved["started"]),
        elapsed=saved["elapsed"],
        revision=saved["revision"],
        builds=saved.get("builds", {}),
        ns=[int(n) for n in _split(args.n)],
        variants=[variant.name for variant in args.variant_list],
        loops=_split(args.loops, LOOPS),
        settings=settings,
    )


def measure_all(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Run every planned measurement; return them with what the report says of the run."""
    builds = {
        v.name: harness.describe_build(v.python) for v in args.variant_list if v.side == "pulsewire"
    }
    specs = harness.plan(
        [int(n) for n in _split(args.n)],
        args.variant_list,
        _split(args.loops, LOOPS),
        args.runs,
        args.fresh,
    )
    options = harness.Options(
        window=args.window,
        warmup=args.warmup,
        batch=args.batch,
        optimize=args.optimize,
        quiet_wait=harness.QuietWait(args.quiet_wait),
        profile=args.profile,
    )
    print(f"bench_idle: {len(specs)} measurements", file=sys.stderr, flush=True)
    started, clock = datetime.now(UTC), time.monotonic()
    parallel = len(specs) if args.smoke else 1  # only a smoke run measures side by side
    results = harness.run_all(specs, options, parallel)
    return {
        "argv": argv,
        "started": started.isoformat(),
        "revision": common.git_revision(Path(__file__).parent, "src"),
        "elapsed": time.monotonic() - clock,
        "builds": builds,
        "results": results,
    }


def smoke_problems(results: Sequence[dict[str, Any]]) -> list[str]:
    """What makes a smoke run fail: a failed measurement, a death, or no heartbeats."""
    problems = []
    for result in results:
        if "error" in result:
            problems.append(f"{result['variant']}: {harness.last_line(result['error'])}")
            continue
        d = figures.derive(result)
        if d["lost"] or d["closed"] or d["suspects"] or d["failed_connects"]:
            problems.append(f"{result['variant']}: connections lost/closed/suspect/failed")
        side = result["variant"].split("@")[0]
        if side in HEARTBEAT_VARIANTS and not d["exchanges"] > 0:
            problems.append(f"{result['variant']}: no heartbeat exchanged")
    return problems


def profile_summary(directory: Path, top: int = 25) -> str:
    """The top functions by own time of every profiled server window."""
    parts = []
    for path in sorted(directory.glob("*.pstats")):
        stream = io.StringIO()
        stats = pstats.Stats(str(path), stream=stream)
        stats.sort_stats(pstats.SortKey.TIME).print_stats(top)
        parts += [f"### {path.name}", "", "```", stream.getvalue().strip(), "```", ""]
    return "\n".join(parts)


def _policy_text() -> str:
    try:
        return repr(variants.pulsewire_policy())
    except ImportError:
        return "(pulsewire not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.variant, args.loop, int(args.n), args.host, args.max_lifetime)
        return 0
    if args.from_json is not None:  # re-render a saved run, measure nothing
        saved = json.loads(args.from_json.read_text())
        run_args = parse_args(saved["argv"])
    else:
        common.install_cleanup()
        saved = measure_all(args, list(sys.argv[1:] if argv is None else argv))
        run_args = args
    results = saved["results"]
    facts = _facts(run_args, saved)
    section = report.section(results, facts)
    print(report.detail(results, facts, _policy_text()))
    heading = report.heading_and_claim(facts.variants)[0]
    print(f"## {heading}\n\n{section}")
    if args.json:
        args.json.write_text(json.dumps(saved, indent=1, default=str))
    if args.profile is not None:
        print(profile_summary(args.profile))
    elif not args.no_write:  # profiled windows are slower: they do not go into RESULTS.md
        common.replace_section(args.results, heading, section)
    if args.smoke:
        problems = smoke_problems(results)
    else:
        problems = [f"{r['variant']}/{r['loop']}/N={r['n']}" for r in results if "error" in r]
    for problem in problems:
        print("problem:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
