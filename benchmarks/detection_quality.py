"""detection_quality: how fast and how wrong fixed and adaptive policies are, on a fake clock.

The two quality-of-service metrics of Chen, Toueg and Aguilera ("On the quality of service
of failure detectors", IEEE ToC 2002), measured for pulsewire policies on simulated links:

- **detection time** T_D: from the instant the peer's host crashes to the verdict DEAD
  (reported as median, p99 and max over the crash trials);
- **mistake recurrence time** T_MR: the mean time between false DEAD verdicts on a live
  peer (connection-time of live pairs / false deaths), also given as false deaths per
  connection-hour; and the **query accuracy** P_A, here the fraction of time a side did
  *not* hold its live peer SUSPECT (a false DEAD ends the connection, so time spent
  wrongly DEAD is not defined without a reconnect model).

Every cell (one policy on one link) runs a live pair of real :class:`pulsewire.core.Session`
objects for ``--hours`` of simulated time; a false DEAD is counted and a fresh pair (new
handshake, new adaptive warm-up) takes over at once. ``--crashes`` times, at random
instants at least a 60 s warm-up after the pair started, the pair is forked
(``copy.deepcopy``) and one side's host is crashed in the copy: T_D is measured there while
the live run goes on. Both sides run the same policy. The clock jumps from event to event,
so ten hours of protocol take one to three seconds; a seed gives the same tables every time.

The network model (``quality/model.py``), stated plainly:

- included: per-direction one-way delay = base RTT / 2 + U(0, jitter), drawn per segment;
  independent loss per transmission and per direction; retransmission of a lost segment
  after the RTO Linux converges to on the path (``srtt + max(4 * mdev, 200 ms)``: 200.2 ms
  on the LAN, 250 ms on the WAN, 320 ms on the jittery WAN), doubling on every retry up to
  120 s; in-order delivery: a segment reaches the application no sooner than every segment
  written before it (head-of-line blocking), so everything behind a lost segment waits;
  each side's output at one instant travels as one segment; at one instant, deliveries are
  handled before timers. A crash is a host losing power: it sends nothing more (no FIN, no
  RST, no retransmission); what it already got across still arrives; what the survivor
  sends to it vanishes. The survivor's verdict (always TIMEOUT here) ends the trial.
- left out: ACKs (their loss, delayed ACKs, spurious retransmissions), SACK and fast
  retransmit, tail-loss probes (for one outstanding segment Linux probes after about
  2 srtt + 200 ms, close to the RTO), congestion window and Nagle; each segment's
  retransmission timer runs from its own first send (real TCP backs off per connection and
  resends what follows the hole once it is filled); the RTO is a constant of the path, not
  re-estimated. ``TCP_USER_TIMEOUT`` (which pulsewire sets to ``timeout``) is not modelled:
  it would abort the sender of the stuck segment within one one-way delay of the heartbeat
  verdict on the other side, for the same stuck segment, so it changes no count. No
  processing time, event-loop latency or clock drift (the local-stall guard never acts),
  no bursty or correlated loss, no outages, no application traffic: the links carry only
  heartbeats, the worst case for evidence (a busy connection has evidence all the time).

Scenarios: LAN (RTT 0.2 ms, no jitter), WAN (RTT 40 ms + 0-10 ms per direction) and a
jittery WAN (RTT 20 ms + 0-100 ms per direction: jitter of several RTTs), each with 0 %,
1 % and 10 % loss per direction; a *changing* path, the WAN clean for 40 minutes and at
10 % loss for the next 20, every hour (T_D and false deaths are also given per phase);
and two *populations*, connections over several paths at once with one policy: "mixed
paths" (LAN 0 %, WAN 1 %, jittery WAN 10 %) and "all nine paths". Connections do not
share state, so a population is its members' cells side by side: its T_D is over all
their crash trials (200 per path), its false-death rate over all their live time (at
least 10 h per path); the matches below are made on those pooled figures, by the same
rules, and the T_D of each path is shown too. A fixed policy must pick one timeout for
every path of a population; an adaptive one may pick a timeout per connection.

Policies (``interval=1`` everywhere, other fields default: jitter 0.25, evidence ANY):
fixed ``Policy(interval=1, timeout=T)`` for T in 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6
(a grid fine enough that adaptive cannot win merely by falling between two of its points:
where the adaptive configs settle on a lossy path, just above its second or third
retransmission step, 1.3-3.5 s, a grid point lies at most 0.2 s higher); adaptive
``Policy(interval=1, timeout=10, adaptive=Adaptive(min_timeout=F, threshold=phi,
tail_threshold=tail))`` for (F, phi, tail) in (1.25, 8, None), (3, 8, None) (the
normal-only estimator of earlier releases, the second one the old ``Policy.wan()``),
(1.25, 8, 3), (1.25, 8, 4), (1.5, 8, 3), (2, 8, 3), (3, 8, 3) (the last is
``Policy.wan()``).

Under each table, every adaptive config is matched with fixed ones on T_D and on the
*steady-state* false-death rate: false deaths of pairs at least 60 s old per
connection-hour of such pairs, the population the crash trials sample (an adaptive policy
uses its 10 s ceiling until it has seen 5 response delays, after every reconnect, which
flatters its all-time rate). Noise decides nothing: T_D medians (and p99s) closer than
0.05 s are equal (about twice the sampling error of a median over 200 crashes), and false
death counts are equal unless an exact one-sided binomial test given the two
connection-times says otherwise (p < 0.05). The two matches:

- (a) the fastest fixed config (lowest T_D median) at least as safe as adaptive (its
  false deaths not significantly more), to compare T_D at equal mistakes;
- (b) the safest fixed config among those at least as fast (median at most 0.05 s
  slower), to compare mistakes at equal T_D.

A match is won by the side that is better on one axis and not worse on the other;
better on one and worse on the other is a *trade-off* (adaptive lies between two fixed
configs), which the verdict does not count for adaptive.

The pieces live in ``benchmarks/quality/``: the model, the study's policies and paths,
the matches, the rule checks that ``--smoke`` runs first, the reports and ``--json``.
Every table goes to standard output; the ``## detection_quality`` section of
``benchmarks/RESULTS.md`` gets the short one.

    python benchmarks/detection_quality.py --smoke     # rule checks, 3 paths, 3 policies, ~1 s
    python benchmarks/detection_quality.py             # 10 h and 200 crashes per cell
    python benchmarks/detection_quality.py --hours 20 --crashes 500 --seed 2
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import _common as common
from quality import report
from quality.checks import RULES, broken_rules
from quality.export import study_json
from quality.study import Options, run_study


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=10.0, help="live hours per cell")
    parser.add_argument("--crashes", type=int, default=200, help="crash trials per cell")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--smoke", action="store_true", help="rule checks, then a tiny study")
    parser.add_argument(
        "--results", type=Path, default=common.RESULTS, help="markdown file to update"
    )
    parser.add_argument("--no-write", action="store_true", help="print only (implied by --smoke)")
    parser.add_argument("--json", type=Path, help="also save every cell's outcome here")
    args = parser.parse_args(argv)
    if args.hours <= 0 or args.crashes < 1 or args.workers < 1:
        parser.error("--hours must be positive, --crashes and --workers at least 1")
    return args


def options_from(args: argparse.Namespace) -> Options:
    if args.smoke:
        return Options(hours=0.1, crashes=10, seed=args.seed, workers=1, smoke=True)
    return Options(args.hours, args.crashes, args.seed, args.workers)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    broken = broken_rules() if args.smoke else []
    for rule in broken:
        print("broken rule:", rule, file=sys.stderr)
    started = datetime.now(UTC)
    study = run_study(options_from(args))
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python benchmarks/detection_quality.py", *given])
    revision = common.git_revision(Path(__file__).parent, "src")
    section = report.section(study, command, started, revision)
    print(report.detail(study, command, started))
    print(f"\n## {report.HEADING}\n\n{section}")
    if args.smoke:
        print(f"\nrule checks: {len(RULES) - len(broken)} of {len(RULES)} hold")
    if args.json:
        args.json.write_text(json.dumps(study_json(study), indent=1))
    if not (args.no_write or args.smoke):
        common.replace_section(args.results, report.HEADING, section)
        print(f"\nwritten to the ## {report.HEADING} section of {args.results}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
