"""The long-run fuzzer of the decoder and the session: ``harness.run_input``, for hours.

    python tests/property/fuzz.py [--runs N] [--seconds T] [--engine atheris|random]

Bounded by ``--runs`` inputs (default 1,000,000) and ``--seconds`` (default 3,600),
whichever ends first. ``atheris`` (``pip install -e '.[fuzz]'``, Linux) is coverage-guided:
it starts from ``harness.seed_inputs()`` (what real sessions send) and mutates towards
new code paths; it stops at the first input that breaks a rule and saves it as
``crash-<hash>``. ``random`` needs nothing installed: it mutates the same seeds at random,
goes on after a failure, and saves each failing input under ``--out``. Either way the last
lines say how many inputs ran and how many raised, by exception type. Any exception is a
failure: the decoder's ProtocolError is caught inside the harness, and the session must
raise nothing at all on its peer's input.

It lives beside the hypothesis suite that runs in CI (``test_hostile_input.py``) because
both run the same target on the same seeds: a failure found here becomes an example there.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).parent


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(0, 8)):
        where = rng.randrange(len(data) + 1)
        choice = rng.random()
        if choice < 0.35 and where < len(data):
            data[where] = rng.randrange(256)
        elif choice < 0.55:
            data[where:where] = rng.randbytes(rng.randint(1, 16))
        elif choice < 0.75:
            del data[where : where + rng.randint(1, 64)]
        elif choice < 0.9:
            other = rng.choice(seeds)
            start = rng.randrange(len(other))
            data[where:where] = other[start : start + rng.randint(1, 300)]
        else:
            data[:3] = rng.randbytes(3)  # another side, limits, policy, tearing, pace
    return bytes(data)


def run_random(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(HERE))
    from harness import run_input, seed_inputs

    seeds = seed_inputs()
    rng = random.Random(args.seed)
    failures: collections.Counter[str] = collections.Counter()
    out = Path(args.out)
    started = time.monotonic()
    runs = 0
    while runs < args.runs and time.monotonic() - started < args.seconds:
        data = mutate(rng, seeds)
        runs += 1
        try:
            run_input(data)
        except Exception as error:
            failures[type(error).__name__] += 1
            out.mkdir(parents=True, exist_ok=True)
            name = hashlib.sha1(data).hexdigest()[:16]
            (out / f"crash-{name}").write_bytes(data)
            if failures.total() <= 5:
                traceback.print_exc()
        if runs % 100_000 == 0:
            rate = runs / (time.monotonic() - started)
            print(f"{runs} inputs, {rate:.0f}/s, failures {dict(failures)}", flush=True)
    took = time.monotonic() - started
    print(f"engine random: {runs} inputs in {took:.0f} s; exceptions: {dict(failures) or 0}")
    return 1 if failures else 0


def run_atheris(args: argparse.Namespace) -> int:
    import atheris

    with atheris.instrument_imports():
        sys.path.insert(0, str(HERE))
        import harness

    corpus = tempfile.mkdtemp(prefix="pulsewire-fuzz-")
    for index, seed in enumerate(harness.seed_inputs()):
        Path(corpus, f"seed-{index}").write_bytes(seed)
    atheris.Setup(
        [
            sys.argv[0],
            f"-runs={args.runs}",
            f"-max_total_time={int(args.seconds)}",
            f"-seed={args.seed}",
            "-print_final_stats=1",
            corpus,
        ],
        harness.run_input,
    )
    atheris.Fuzz()  # exits the process: 0 when every input ran clean
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--engine", choices=["atheris", "random"], default="atheris")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=os.getcwd(), help="random: where failures go")
    args = parser.parse_args()
    return run_atheris(args) if args.engine == "atheris" else run_random(args)


if __name__ == "__main__":
    sys.exit(main())
