"""bench_anyio_idle: idle CPU of the anyio driver against the asyncio driver, on asyncio.

Both drivers hold N idle connections over loopback with the same policy (1 s interval,
3 s timeout), a server process and a client process each, measured by the bench_idle
harness (``benchmarks/idle/``: the same workers, quiet waits, bounded waits, workers
killed by PID). Variants: ``pulsewire`` (the asyncio driver: one loop-wide scheduler,
protocol callbacks) and ``anyio`` (``pulsewire.anyio`` on the asyncio loop: two tasks per
connection, the timer as the reader's cancel-scope deadline). Every round measures both,
back to back, in fresh process pairs; the ratio anyio / asyncio is taken round by round
and its median reported.

Target: the anyio driver's idle CPU (server + client) within 2x the asyncio driver's at
N=1,000.

    python benchmarks/bench_anyio_idle.py            # N=1,000, 3 rounds of 4 s: ~1 min
    python benchmarks/bench_anyio_idle.py --smoke    # N=50, 1 round of 2 s, no RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common as common
from idle import figures, harness
from idle.harness import Variant

HEADING = "bench_anyio_idle: the anyio driver's idle CPU against the asyncio driver's"
TARGET = 2.0  #: anyio / asyncio idle CPU must not exceed this
VARIANTS = (Variant("pulsewire", "pulsewire"), Variant("anyio", "anyio"))
LABELS = {"pulsewire": "asyncio driver", "anyio": "anyio driver (asyncio backend)"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="idle connections")
    parser.add_argument("--runs", type=int, default=3, help="rounds (both variants each)")
    parser.add_argument("--window", type=float, default=4.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds after connecting")
    parser.add_argument("--quiet-wait", type=float, default=30.0, help="seconds, in all")
    parser.add_argument("--smoke", action="store_true", help="N=50, 1 round of 2 s")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--results", type=Path, default=common.RESULTS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.runs, args.window, args.warmup = 50, 1, 2.0, 1.0
        args.no_write, args.quiet_wait = True, 0.0
    return args


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    specs = harness.plan([args.n], VARIANTS, ["asyncio"], args.runs, fresh=True)
    options = harness.Options(
        window=args.window,
        warmup=args.warmup,
        batch=200,
        optimize=False,
        quiet_wait=harness.QuietWait(args.quiet_wait),
        profile=None,
    )
    return harness.run_all(specs, options)


def rounds(results: Sequence[dict[str, Any]]) -> list[dict[str, dict[str, Any]]]:
    """Per round, each variant's derived figures (rounds where one failed are dropped)."""
    by_run: dict[int, dict[str, dict[str, Any]]] = {}
    for result in results:
        if "error" not in result:
            by_run.setdefault(result["run"], {})[result["variant"]] = figures.derive(result)
    return [found for _, found in sorted(by_run.items()) if len(found) == len(VARIANTS)]


def report(args: argparse.Namespace, results: Sequence[dict[str, Any]], started: datetime) -> str:
    measured = rounds(results)
    if not measured:
        raise SystemExit("no round measured both variants: see the errors above")
    pair = [r["anyio"]["pair_cpu"] / r["pulsewire"]["pair_cpu"] for r in measured]
    server = [r["anyio"]["us_conn_s"] / r["pulsewire"]["us_conn_s"] for r in measured]
    rows = []
    for variant in VARIANTS:
        name = variant.name
        rows.append(
            [
                LABELS[name],
                figures.fmt(common.median(r[name]["us_conn_s"] for r in measured), 1),
                figures.fmt(common.median(100 * r[name]["pair_cpu"] for r in measured), 1, " %"),
                figures.fmt(common.median(r[name]["us_exchange"] for r in measured), 1),
                figures.fmt(common.median(r[name]["exchanges"] for r in measured), 2),
                str(sum(r[name]["lost"] for r in measured)),
            ]
        )
    table = common.markdown_table(
        [
            f"N={args.n}, asyncio loop",
            "server µs/conn·s",
            "server + client CPU",
            "µs/exchange",
            "exchanges/conn·s",
            "false deaths",
        ],
        rows,
    )
    ratio = common.median(pair)
    verdict = "meets" if ratio <= TARGET else "MISSES"
    others = common.median(d["others_pct"] for r in measured for d in r.values())
    findings = [
        f"anyio / asyncio idle CPU (server + client), median of {len(measured)} round(s): "
        f"**{ratio:.2f}x** (rounds: {', '.join(f'{x:.2f}' for x in pair)}); "
        f"server side alone {common.median(server):.2f}x. Target ≤ {TARGET:g}x: {verdict}.",
        f"Other processes kept {others:.0f} % of a core busy during the windows (median).",
    ]
    revision = common.git_revision(Path(__file__).parent, "src")
    return common.claim_section(
        f"the anyio driver's idle CPU is within {TARGET:g}x the asyncio driver's at "
        f"{args.n} idle connections on asyncio",
        table,
        findings,
        measured=common.measured_on(started, revision),
        command="python benchmarks/bench_anyio_idle.py"
        + ("" if args.n == 1000 else f" --n {args.n}"),
        how=f"{args.runs} round(s) of {args.window:g} s after {args.warmup:g} s warm-up, "
        "a fresh process pair per variant per round",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    common.install_cleanup()
    started, clock = datetime.now(UTC), time.monotonic()
    results = measure(args)
    errors = [harness.last_line(r["error"]) for r in results if "error" in r]
    for error in errors:
        print("problem:", error, file=sys.stderr)
    section = report(args, results, started)
    print(f"## {HEADING}\n\n{section}\n\n(took {time.monotonic() - clock:.0f} s)")
    if not args.no_write:
        common.replace_section(args.results, HEADING, section)
    lost = sum(d["lost"] for r in rounds(results) for d in r.values())
    return 1 if errors or lost else 0


if __name__ == "__main__":
    sys.exit(main())
