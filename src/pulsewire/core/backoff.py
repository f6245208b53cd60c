"""Reconnection backoff: exponential, capped, with full jitter. A value, like a policy."""

from __future__ import annotations

import math
import random

import msgspec

from pulsewire.errors import PolicyError

__all__ = ["Backoff"]


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """How long to wait before reconnection attempt ``n`` (0-based).

    The ceiling grows as ``initial * multiplier ** n`` up to ``maximum``; the delay is drawn
    uniformly between 0 and that ceiling ("full jitter"), so that a thousand clients
    cut off by the same outage do not come back in one wave.
    """

    initial: float = 0.1  #: the ceiling of the first attempt's delay, seconds
    maximum: float = 30.0  #: the largest ceiling, seconds
    multiplier: float = 2.0  #: the ceiling grows by this factor per attempt (>= 1)

    def __post_init__(self) -> None:
        for name in ("initial", "maximum"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise PolicyError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.maximum < self.initial:
            raise PolicyError(
                f"maximum ({self.maximum} s) must be at least initial ({self.initial} s)"
            )
        if not (isinstance(self.multiplier, int | float) and self.multiplier >= 1):
            raise PolicyError(f"multiplier must be >= 1, got {self.multiplier!r}")

    def ceiling(self, attempt: int) -> float:
        """The largest delay attempt ``attempt`` may wait."""
        exponent = min(attempt, 64)  # beyond this the cap has long been reached
        return min(self.maximum, self.initial * self.multiplier**exponent)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """How long attempt ``attempt`` waits: uniform between 0 and its :meth:`ceiling`."""
        return rng.uniform(0.0, self.ceiling(attempt))
