"""Fixtures for the fault suite: two network namespaces, real packet loss, real processes.

Every test gets fresh hosts (:class:`~pulsewire.testing.TwoHosts`: host a is the observer,
host b the peer) and is skipped, with the reason, where they cannot be built (not root, no
``ip`` or ``nft``, no namespaces). Both endpoints run as subprocesses inside the hosts
(:mod:`pulsewire.testing.endpoints`) and report as JSON lines; this process only injects
faults and reads the reports. Times are ``time.monotonic()``, shared by all processes.

Run with ``pytest tests/faults -s`` to see the measured numbers every test prints.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pulsewire.testing import TwoHosts, netns_available


@pytest.fixture
def hosts() -> Iterator[TwoHosts]:
    reason = netns_available()
    if reason is not None:
        pytest.skip(reason)
    with TwoHosts() as built:
        yield built
