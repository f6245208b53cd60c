"""Fixtures for the fault suite: two network namespaces, real packet loss, real processes.

Every test gets fresh hosts (:class:`~pulsewire.cli.netns.TwoHosts`: host a is the
observer, host b the peer) and is skipped, with the reason, where they cannot be built (not
root, no ``ip`` or ``nft``, no namespaces). Both endpoints run as subprocesses inside the
hosts (``benchmarks/lab/endpoints.py``) and report as JSON lines; this process only injects
faults and reads the reports. Times are ``time.monotonic()``, shared by all processes.

Run with ``pytest tests/faults -s`` to see the measured numbers every test prints.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulsewire.cli.netns import TwoHosts, netns_available

# The fault lab is shared with the detection benchmark: its endpoints live in
# benchmarks/lab/ (the benchmark imports them as `lab.endpoints`, benchmarks/ being its own
# directory). Putting benchmarks/ on sys.path lets the fault tests import the same module.
BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)


@pytest.fixture
def hosts() -> Iterator[TwoHosts]:
    reason = netns_available()
    if reason is not None:
        pytest.skip(reason)
    with TwoHosts() as built:
        yield built
