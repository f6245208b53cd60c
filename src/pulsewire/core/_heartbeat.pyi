# The compiled twin of pulsewire.core.heartbeat.PythonHeartbeatFields (see _heartbeat.c).
from array import array

from pulsewire.core.estimators import RttEstimator
from pulsewire.core.heartbeat import Steady

class HeartbeatFields:
    _ping_seq: int
    _record: array[float]
    _rtt: RttEstimator
    _steady: Steady | None
    def receive_heartbeat(
        self, frame: bytes | bytearray | memoryview, now: float
    ) -> tuple[bytes, float | None] | None: ...
    def heartbeat_due(self, now: float) -> tuple[bytes, float] | None: ...

def configure(
    *,
    ping_head: int,
    pong_head: int,
    float_tag: int,
    max_fixed_seq: int,
    frame_size: int,
    epsilon: float,
    no_time: float,
    no_sample: float,
    last_evidence: int,
    last_sent: int,
    last_ping: int,
    ping_delay: int,
    first_ping: int,
    pings_full_at: int,
    pings_received: int,
    rtt_staged: int,
    record_size: int,
) -> None: ...
