from __future__ import annotations

import random

import pytest

from pulsewire.core.backoff import Backoff
from pulsewire.errors import PolicyError


def test_the_ceiling_grows_exponentially_up_to_the_maximum() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, multiplier=2.0)
    assert [backoff.ceiling(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.ceiling(10_000) == 1.0


def test_delays_are_full_jitter_below_the_ceiling() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0)
    rng = random.Random(7)
    delays = [backoff.delay(3, rng) for _ in range(2000)]
    assert all(0.0 <= delay <= 8.0 for delay in delays)
    assert min(delays) < 0.5
    assert max(delays) > 7.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": 0}, "initial must be a positive"),
        ({"initial": 2.0, "maximum": 1.0}, "maximum"),
        ({"multiplier": 0.5}, "multiplier"),
    ],
)
def test_bad_backoffs_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Backoff(**kwargs)
