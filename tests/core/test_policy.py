from __future__ import annotations

import math

import msgspec
import pytest

from pulsewire.core import Evidence, Limits, Policy, Session
from pulsewire.errors import PolicyError
from pulsewire.testing import opening_bytes


def test_default_policy_is_valid_with_documented_derived_values() -> None:
    policy = Policy()
    # Chosen on real namespaces (docs/tuning.md): one ping exchange a second, dead after
    # 3 s, with linear retransmission timeouts and TCP_USER_TIMEOUT = timeout.
    assert (policy.interval, policy.timeout) == (1.0, 3.0)
    assert policy.tcp_user_timeout
    assert policy.tcp_thin_linear_timeouts
    assert policy.effective_suspect_after == 2.0  # halfway between 1 and 3
    assert policy.effective_close_timeout == policy.timeout


@pytest.mark.parametrize("field", ["tcp_user_timeout", "tcp_thin_linear_timeouts"])
def test_kernel_switches_must_be_booleans(field: str) -> None:
    with pytest.raises(PolicyError, match=rf"^{field} must be True or False, got 1$"):
        Policy(**{field: 1})
    with pytest.raises(msgspec.ValidationError, match=rf"Expected `bool`.*\$\.{field}"):
        msgspec.json.decode(f'{{"{field}": "yes"}}'.encode(), type=Policy)


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
    assert policy.tcp_user_timeout


def test_for_detection_rejects_impossible_budgets() -> None:
    with pytest.raises(PolicyError, match="within"):
        Policy.for_detection(0)
    with pytest.raises(PolicyError, match="loss"):
        Policy.for_detection(3.0, loss=1.5)


def test_describe_states_the_detection_bound() -> None:
    assert "dead after 3 s of silence" in Policy().describe()
    assert "between 3 s and 10 s" in Policy.wan().describe()
    assert "linear retransmission timeouts on" in Policy().describe()
    assert "linear retransmission timeouts off" in Policy(tcp_thin_linear_timeouts=False).describe()


def test_describe_says_what_happens_to_a_bbr_socket() -> None:
    assert (
        Policy()
        .describe()
        .endswith(
            "linear retransmission timeouts on (Linux; a bbr socket is switched to reno so that "
            "they apply)."
        )
    )
    assert (
        Policy(thin_stream_congestion="cubic")
        .describe()
        .endswith("a bbr socket is switched to cubic so that they apply).")
    )
    assert (
        Policy(thin_stream_congestion=None)
        .describe()
        .endswith(
            "linear retransmission timeouts on (Linux; inert on a bbr socket, whose congestion "
            "control is kept)."
        )
    )
    assert (
        Policy(tcp_thin_linear_timeouts=False)
        .describe()
        .endswith("linear retransmission timeouts off.")
    )


def test_kernel_options_default_to_a_user_timeout_and_linear_timeouts() -> None:
    from pulsewire.core.keepalive import KernelKeepalive

    assert Policy(timeout=4.0).kernel_options() == KernelKeepalive(
        user_timeout=4.0, linear_timeouts=True, thin_stream_congestion="reno"
    )
    assert Policy(tcp_user_timeout=False).kernel_options() == KernelKeepalive(
        linear_timeouts=True, thin_stream_congestion="reno"
    )
    assert Policy(timeout=4.0, tcp_thin_linear_timeouts=False).kernel_options() == (
        KernelKeepalive(user_timeout=4.0)
    )
    assert Policy(tcp_user_timeout=False, tcp_thin_linear_timeouts=False).kernel_options() is None


def test_kernel_options_keep_an_explicit_user_timeout() -> None:
    from pulsewire.core.keepalive import KernelKeepalive

    explicit = KernelKeepalive(idle=1, interval=1, count=3, user_timeout=2.0)
    policy = Policy(kernel=explicit, tcp_thin_linear_timeouts=False)
    assert policy.kernel_options() == explicit
    # The policy's linear timeouts are added to the kernel's request; the kernel's own
    # linear_timeouts=True stays on whatever the policy says.
    assert Policy(kernel=explicit).kernel_options() == msgspec.structs.replace(
        explicit, linear_timeouts=True, thin_stream_congestion="reno"
    )
    own = KernelKeepalive(user_timeout=3.0, linear_timeouts=True, thin_stream_congestion="reno")
    assert Policy(kernel=own, tcp_thin_linear_timeouts=False).kernel_options() == own


@pytest.mark.parametrize(
    ("probing", "timeout", "user_timeout"),
    [
        # Linux replaces TCP_KEEPCNT by TCP_USER_TIMEOUT: a user timeout shorter than
        # idle + interval * count would drop after fewer probes than asked for.
        ((1, 1, 3), 3.0, 4),
        ((1, 1, 3), 4.0, 4.0),
        ((1, 1, 3), 6.0, 6.0),  # longer than the probing: the policy's timeout stands
        ((0.5, 0.25, 3), 2.0, 4),  # the whole seconds applied: 1 + 1 * 3
        ((30, 10, 3), 5.0, 60),  # NAT-keeping probes
    ],
)
def test_kernel_probing_raises_the_user_timeout_to_keep_its_probe_count(
    probing: tuple[float, float, int], timeout: float, user_timeout: float
) -> None:
    from pulsewire.core.keepalive import KernelKeepalive

    idle, interval, count = probing
    kernel = KernelKeepalive(idle=idle, interval=interval, count=count)
    policy = Policy(interval=min(1.0, timeout / 2), timeout=timeout, kernel=kernel)
    options = policy.kernel_options()
    assert options == KernelKeepalive(
        idle=idle,
        interval=interval,
        count=count,
        user_timeout=user_timeout,
        linear_timeouts=True,
        thin_stream_congestion="reno",
    )
    assert Policy(timeout=timeout, kernel=kernel, tcp_user_timeout=False).kernel_options() == (
        KernelKeepalive(
            idle=idle,
            interval=interval,
            count=count,
            linear_timeouts=True,
            thin_stream_congestion="reno",
        )
    )


# ---------------------------------------------------------------- thin_stream_congestion


def test_thin_stream_congestion_defaults_to_reno_in_every_preset() -> None:
    presets = [
        Policy(),
        Policy.lan(),
        Policy.wan(),
        Policy.nat(),
        Policy.mobile(),
        Policy.for_detection(3.0),
    ]
    for policy in presets:
        assert policy.thin_stream_congestion == "reno"
        options = policy.kernel_options()
        assert options is not None
        assert (options.linear_timeouts, options.thin_stream_congestion) == (True, "reno")


def test_thin_stream_congestion_none_leaves_congestion_control_alone() -> None:
    from pulsewire.core.keepalive import KernelKeepalive

    policy = Policy(thin_stream_congestion=None)
    assert policy.kernel_options() == KernelKeepalive(user_timeout=3.0, linear_timeouts=True)
    assert "thin_stream_congestion=None" in repr(policy)
    assert msgspec.json.decode(msgspec.json.encode(policy), type=Policy) == policy


def test_thin_stream_congestion_goes_only_with_linear_timeouts() -> None:
    from pulsewire.core.keepalive import KernelKeepalive

    off = Policy(tcp_thin_linear_timeouts=False, thin_stream_congestion="cubic")
    assert off.kernel_options() == KernelKeepalive(user_timeout=3.0)
    assert Policy(thin_stream_congestion="cubic").kernel_options() == KernelKeepalive(
        user_timeout=3.0, linear_timeouts=True, thin_stream_congestion="cubic"
    )


def test_thin_stream_congestion_joins_the_kernels_linear_timeouts_unless_it_names_its_own() -> None:
    from pulsewire.core.keepalive import KernelKeepalive

    kernel = KernelKeepalive(user_timeout=5.0, linear_timeouts=True)
    # The kernel asks for linear timeouts: the policy's congestion control goes with them.
    options = Policy(kernel=kernel, tcp_thin_linear_timeouts=False).kernel_options()
    assert options is not None
    assert options.thin_stream_congestion == "reno"
    # The kernel's own choice wins.
    own = msgspec.structs.replace(kernel, thin_stream_congestion="cubic")
    assert Policy(kernel=own).kernel_options() == own
    # The policy's None is carried as None.
    assert Policy(kernel=kernel, thin_stream_congestion=None).kernel_options() == kernel


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", r"thin_stream_congestion must be a congestion control name \(1 to 15 printable"),
        ("a" * 16, r"thin_stream_congestion must be a congestion control name"),
        ("cubic ", r"thin_stream_congestion must be a congestion control name"),
        ("réno", r"thin_stream_congestion must be a congestion control name"),
        (3, r"thin_stream_congestion must be a congestion control name .* got 3$"),
        ("bbr", r"thin_stream_congestion 'bbr' never lets a stream count as thin"),
    ],
)
def test_thin_stream_congestion_is_validated(value: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy(thin_stream_congestion=value)  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match=message):  # whether or not linear timeouts are on
        Policy(tcp_thin_linear_timeouts=False, thin_stream_congestion=value)  # type: ignore[arg-type]


def test_thin_stream_congestion_is_validated_when_decoding() -> None:
    with pytest.raises(msgspec.ValidationError, match="never lets a stream count as thin"):
        msgspec.json.decode(b'{"thin_stream_congestion": "bbr"}', type=Policy)
