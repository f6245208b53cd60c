from __future__ import annotations

import math

import msgspec
import pytest

from pulsewire.core import Adaptive, Evidence, Limits, Policy, Session
from pulsewire.core.policy import MIN_INTERVAL, MIN_TIMEOUT
from pulsewire.errors import PolicyError
from pulsewire.testing import opening_bytes


def test_default_policy_is_valid_with_documented_derived_values() -> None:
    policy = Policy()
    # Chosen on real namespaces (docs/tuning.md): one ping exchange a second, dead after 3 s.
    assert (policy.interval, policy.timeout) == (1.0, 3.0)
    assert policy.effective_suspect_after == 2.0  # halfway between 1 and 3
    assert policy.effective_close_timeout == policy.timeout


def test_unknown_fields_are_refused_when_loading() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `intervall`"):
        msgspec.json.decode(b'{"intervall": 5}', type=Policy)
    with pytest.raises(msgspec.ValidationError, match="unknown field `window_size`"):
        msgspec.json.decode(b'{"window_size": 5}', type=Limits)


def test_explicit_suspect_after_and_close_timeout_are_used() -> None:
    policy = Policy(suspect_after=1.5, close_timeout=0.5)
    assert policy.effective_suspect_after == 1.5
    assert policy.effective_close_timeout == 0.5


def test_timeout_not_longer_than_interval_is_refused_with_an_explanation() -> None:
    with pytest.raises(PolicyError, match=r"timeout \(2 s\) must be longer than interval \(2 s\)"):
        Policy(interval=2, timeout=2)


@pytest.mark.parametrize("field", ["interval", "timeout", "min_peer_interval", "handshake_timeout"])
@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf])
def test_durations_must_be_positive_and_finite(field: str, value: float) -> None:
    with pytest.raises(PolicyError, match=field):
        Policy(**{field: value})


def test_suspect_after_must_be_shorter_than_timeout() -> None:
    with pytest.raises(PolicyError, match="suspect_after"):
        Policy(timeout=5, suspect_after=5)


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 2.0])
def test_jitter_must_be_a_fraction_below_one(jitter: float) -> None:
    with pytest.raises(PolicyError, match="jitter"):
        Policy(jitter=jitter)


@pytest.mark.parametrize("field", ["timeout", "min_peer_interval"])
def test_durations_the_hello_cannot_carry_are_refused(field: str) -> None:
    with pytest.raises(PolicyError, match="at most 86400"):
        Policy(**{field: 86_401.0})


def test_longest_policy_the_hello_carries_is_accepted_by_a_peer() -> None:
    session = Session(now=0.0)
    session.receive_data(opening_bytes(Policy(interval=3600, timeout=86_400)), 0.0)
    assert session.death is None
    assert session.negotiated is not None


def test_policy_is_an_immutable_comparable_printable_value() -> None:
    policy = Policy(interval=2, timeout=10, evidence=Evidence.PONG)
    assert policy == Policy(interval=2, timeout=10, evidence=Evidence.PONG)
    assert hash(policy) == hash(Policy(interval=2, timeout=10, evidence=Evidence.PONG))
    assert "interval=2" in repr(policy)
    with pytest.raises(AttributeError):
        policy.interval = 3  # type: ignore[misc]


def test_policy_round_trips_through_json() -> None:
    policy = Policy(interval=0.5, timeout=2, evidence=Evidence.PONG)
    assert msgspec.json.decode(msgspec.json.encode(policy), type=Policy) == policy


def test_policy_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Policy(timeout=0.5)


def test_receive_window_defaults_to_max_message_size() -> None:
    assert Limits(max_message_size=1000).effective_receive_window == 1000
    assert Limits(max_message_size=1000, receive_window=5000).effective_receive_window == 5000


def test_receive_window_smaller_than_a_message_is_refused() -> None:
    with pytest.raises(PolicyError, match="receive_window"):
        Limits(max_message_size=1000, receive_window=999)


@pytest.mark.parametrize("field", ["max_frame_size", "max_message_size", "chunk_size"])
@pytest.mark.parametrize("value", [0, -1, 1.5])
def test_sizes_must_be_positive_integers(field: str, value: float) -> None:
    with pytest.raises(PolicyError, match=field):
        Limits(**{field: value})


@pytest.mark.parametrize(
    "limits",
    [
        {"max_frame_size": 2**31 + 1},
        {"max_message_size": 2**31},
        {"max_message_size": 100, "receive_window": 2**31},
    ],
)
def test_sizes_the_hello_cannot_carry_are_refused(limits: dict[str, int]) -> None:
    with pytest.raises(PolicyError, match="must be at most"):
        Limits(**limits)


def test_largest_limits_the_hello_carries_are_accepted_by_a_peer() -> None:
    limits = Limits(max_frame_size=2**31, max_message_size=2**31 - 16)
    session = Session(now=0.0)
    session.receive_data(opening_bytes(limits=limits), 0.0)
    assert session.death is None


# ---------------------------------------------------------------------------- presets


def test_lan_preset_convicts_in_under_a_second() -> None:
    lan = Policy.lan()
    assert lan.timeout < 1.0
    assert lan.interval * 3 < lan.timeout + 1e-9


def test_wan_and_mobile_presets_adapt_between_floor_and_ceiling() -> None:
    for preset in (Policy.wan(), Policy.mobile()):
        assert preset.adaptive is not None
        assert preset.interval < preset.adaptive.min_timeout < preset.timeout


def test_nat_preset_pings_at_a_third_of_the_middlebox_idle_timer() -> None:
    nat = Policy.nat(idle_timeout=30.0)
    assert nat.interval == 10.0
    assert nat.timeout == 40.0
    with pytest.raises(PolicyError, match="idle_timeout"):
        Policy.nat(idle_timeout=0)


def test_mobile_preset_pings_below_common_nat_timers() -> None:
    assert Policy.mobile().interval < 30.0


@pytest.mark.parametrize(("loss", "pings"), [(0.0, 3), (0.01, 3), (0.03, 4), (0.1, 5)])
def test_for_detection_fits_more_pings_into_the_timeout_on_lossier_paths(
    loss: float, pings: int
) -> None:
    policy = Policy.for_detection(3.0, loss=loss)
    assert policy.timeout == 3.0
    assert policy.interval == pytest.approx(3.0 / pings)


def test_for_detection_rejects_impossible_budgets() -> None:
    with pytest.raises(PolicyError, match="within"):
        Policy.for_detection(0)
    with pytest.raises(PolicyError, match="loss"):
        Policy.for_detection(3.0, loss=1.5)


def test_describe_states_the_detection_bound() -> None:
    assert "dead after 3 s of silence" in Policy().describe()
    assert "between 3 s and 10 s" in Policy.wan().describe()
    assert "Pings every 0.8-0.95 s, busy or idle" in Policy.auto().describe()


# ---------------------------------------------------------------------------- floors


def test_a_detection_budget_too_short_to_be_safe_is_refused_with_the_reason() -> None:
    # Accepted before the floor: pinged every 3.3 ms and convicted after 10 ms.
    with pytest.raises(PolicyError) as refused:
        Policy.for_detection(0.01)
    message = str(refused.value)
    assert "timeout 0.01 s is below pulsewire's floor of 0.1 s" in message
    assert "would convict a live peer" in message
    assert "Policy.lan()" in message  # what to use instead


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({"interval": 0.005, "timeout": 1.0}, "interval 0.005 s is below"),
        ({"min_peer_interval": 0.005}, "min_peer_interval 0.005 s is below"),
        ({"interval": 0.02, "timeout": 0.05}, "timeout 0.05 s is below"),
        (
            {"interval": 0.02, "timeout": 1.0, "adaptive": Adaptive(min_timeout=0.05)},
            "adaptive.min_timeout 0.05 s is below",
        ),
    ],
)
def test_implausibly_short_timings_are_refused_wherever_a_policy_is_built(
    fields: dict[str, object], refused: str
) -> None:
    with pytest.raises(PolicyError, match=refused):
        Policy(**fields)
    # Loading from a file builds the same value, with the same checks.
    with pytest.raises(msgspec.ValidationError, match=refused):
        msgspec.convert(fields, Policy)


def test_the_floors_themselves_are_accepted() -> None:
    policy = Policy(interval=MIN_INTERVAL, timeout=MIN_TIMEOUT, min_peer_interval=MIN_INTERVAL)
    assert (policy.interval, policy.timeout) == (0.01, 0.1)
    assert Policy.for_detection(MIN_TIMEOUT).timeout == MIN_TIMEOUT


def test_every_preset_clears_the_floors() -> None:
    presets = (Policy(), Policy.auto(), Policy.lan(), Policy.wan(), Policy.nat(), Policy.mobile())
    for preset in presets:
        assert preset.interval >= MIN_INTERVAL
        assert preset.min_peer_interval >= MIN_INTERVAL
        assert preset.timeout >= MIN_TIMEOUT
