"""A library is quiet: pulsewire's events go to the ``logging`` logger ``pulsewire``.

Nothing on stdout unless the application asks; warnings on stderr by Python's default;
levels and handlers as for any library; the fields reach structlog's ProcessorFormatter as
data; ``logger=`` gives a connection its own destination and context.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture

import pulsewire
from pulsewire import logevents

README = Path(__file__).resolve().parent.parent / "README.md"


def run_python(source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=60, check=False
    )


def readme_sample() -> str:
    """The Python block of the README's "In code" section."""
    section = README.read_text().split("## In code", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no python block under '## In code'"
    return match.group(1)


def events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """pulsewire's events as caplog recorded them: each record's ``msg`` is the event dict."""
    return [
        dict(record.msg, level=record.levelname.lower())
        for record in caplog.records
        if record.name.startswith("pulsewire") and isinstance(record.msg, dict)
    ]


async def reset_by_the_server(**connect_options: Any) -> pulsewire.Connection:
    """A client connection that the server resets (SO_LINGER 0): a WARNING ``peer.dead``."""
    accepted: asyncio.Queue[pulsewire.Connection] = asyncio.Queue()

    async def hold(connection: pulsewire.Connection) -> None:
        accepted.put_nowait(connection)
        await connection.wait_dead()

    async with await pulsewire.serve(hold) as listener:
        client = await pulsewire.connect("127.0.0.1", listener.port, **connect_options)
        async with asyncio.timeout(5):
            served = await accepted.get()
            served.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            served.abort()
            await client.wait_dead()
    return client


# --------------------------------------------------------------------------------------
# Quiet by default
# --------------------------------------------------------------------------------------


def test_the_readme_sample_prints_only_its_own_two_lines() -> None:
    result = run_python(readme_sample())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    print(f"\nREADME sample stdout: {lines}")
    assert len(lines) == 2, result.stdout
    message, rtt = lines[0].split()
    assert message == "b'hello'"
    assert 0 <= float(rtt) < 1.0  # measured at the handshake: a number, not None
    assert lines[1] == "Reason.LOCAL_CLOSE"


def test_an_application_that_configures_nothing_sees_warnings_on_stderr_only() -> None:
    source = textwrap.dedent(
        """
        import asyncio, pulsewire

        async def main():
            async with await pulsewire.serve(lambda c: c.wait_dead()) as listener:
                reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
                writer.write(b"GET / HTTP/1.1\\r\\n\\r\\n")  # not pulsewire: a handshake failure
                await reader.read()
                writer.close()
                # INFO events (peer.connected, server.closed, ...) stay silent.
                connection = await pulsewire.connect("127.0.0.1", listener.port)
                await connection.close()
            print("done")

        asyncio.run(main())
        """
    )
    result = run_python(source)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    lines = result.stderr.splitlines()
    print(f"\nstderr: {lines}")
    assert len(lines) == 1
    assert lines[0].startswith("peer.handshake_failed peer=127.0.0.1:")
    assert "reason=protocol_error" in lines[0]
    assert "expected magic b'PWIR', got b'GET '" in lines[0]


# --------------------------------------------------------------------------------------
# The logging tree
# --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_caplog_sees_peer_dead_with_its_fields(caplog: pytest.LogCaptureFixture) -> None:
    client = await reset_by_the_server()
    (dead,) = [event for event in events(caplog) if event["event"] == logevents.PEER_DEAD]
    assert dead["level"] == "warning"
    assert dead["peer"] == client.peer_address
    assert (dead["reason"], dead["source"]) == ("reset", "kernel")
    assert isinstance(dead["silence"], float)
    assert {"last_rtt", "close_code", "error"} <= dead.keys()
    record = next(
        r for r in caplog.records if r.msg is not None and r.msg.get("event") == "peer.dead"
    )
    assert record.name == "pulsewire"
    # Formatters that are not structlog's print one readable line.
    assert record.getMessage().startswith(f"peer.dead peer={client.peer_address} reason=reset")


@pytest.mark.asyncio
async def test_the_level_of_the_pulsewire_logger_decides(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="pulsewire")
    await reset_by_the_server()
    assert events(caplog) == []  # peer.dead is a WARNING: below the level

    caplog.set_level(logging.INFO, logger="pulsewire")
    await reset_by_the_server()
    names = [event["event"] for event in events(caplog)]
    assert names[0] == logevents.SERVER_LISTENING
    assert logevents.PEER_CONNECTED in names
    assert logevents.PEER_DEAD in names


@pytest.mark.asyncio
async def test_a_processor_formatter_gets_the_fields_as_data() -> None:
    seen: list[dict[str, Any]] = []

    def keep(logger: Any, method: str, event_dict: dict[str, Any]) -> str:
        seen.append(dict(event_dict))
        return ""

    handler = logging.Handler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                keep,
            ]
        )
    )
    handler.emit = lambda record: handler.format(record)  # type: ignore[method-assign]
    logger = logging.getLogger("pulsewire")
    logger.addHandler(handler)
    try:
        await reset_by_the_server()
    finally:
        logger.removeHandler(handler)
    (dead,) = [event for event in seen if event["event"] == logevents.PEER_DEAD]
    assert dead["logger"] == "pulsewire"
    assert dead["level"] == "warning"
    assert dead["reason"] == "reset"
    assert isinstance(dead["silence"], float)  # data, not text


@pytest.mark.asyncio
async def test_capture_logs_sees_the_events_like_the_applications_own() -> None:
    with structlog.testing.capture_logs() as logs:
        await reset_by_the_server()
    (dead,) = [event for event in logs if event["event"] == logevents.PEER_DEAD]
    assert (dead["log_level"], dead["reason"]) == ("warning", "reset")


@pytest.mark.asyncio
async def test_an_application_routing_structlog_through_logging_sees_its_processors_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def stamp(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict["app"] = "mine"
        return event_dict

    structlog.configure(
        processors=[stamp, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
    )
    try:
        await reset_by_the_server()
    finally:
        structlog.reset_defaults()
    dead = [event for event in events(caplog) if event["event"] == logevents.PEER_DEAD]
    assert [(event["app"], event["reason"]) for event in dead] == [("mine", "reset")]


# --------------------------------------------------------------------------------------
# logger=
# --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_logger_adapter_adds_its_context_to_every_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    adapter = logging.LoggerAdapter(logging.getLogger("app.db"), {"shard": 7})
    await reset_by_the_server(logger=adapter)
    records = [r for r in caplog.records if r.name == "app.db"]
    assert [r.msg["event"] for r in records] == [logevents.PEER_DEAD]
    assert records[0].msg["shard"] == 7
    # The server, which was given no logger, logs to "pulsewire" as usual.
    assert all(r.name == "pulsewire" for r in caplog.records if r.name != "app.db")


@pytest.mark.asyncio
async def test_a_structlog_logger_receives_the_events_with_its_bound_context() -> None:
    capture = LogCapture()
    logger = structlog.wrap_logger(None, processors=[capture]).bind(tenant="acme")
    await reset_by_the_server(logger=logger)
    names = [entry["event"] for entry in capture.entries]
    assert names[0] == logevents.PEER_CONNECTED  # every level: the logger decides
    assert logevents.PEER_DEAD in names
    assert all(entry["tenant"] == "acme" for entry in capture.entries)


@pytest.mark.asyncio
async def test_serve_and_client_take_a_logger_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    server_log = logging.getLogger("app.server")
    client_log = logging.LoggerAdapter(logging.getLogger("app.client"), {"role": "client"})

    async def echo(connection: pulsewire.Connection) -> None:
        async for message in connection:
            await connection.send(message)

    listener = await pulsewire.serve(echo, logger=server_log)
    async with (
        listener,
        pulsewire.Client("127.0.0.1", listener.port, logger=client_log) as client,
    ):
        connection = await client.connection()
        await connection.send(b"x")
        assert await connection.recv() == b"x"
    by_logger: dict[str, list[str]] = {}
    for record in caplog.records:
        if isinstance(record.msg, dict):
            by_logger.setdefault(record.name, []).append(record.msg["event"])
    assert by_logger["app.server"][0] == logevents.SERVER_LISTENING
    assert logevents.PEER_CONNECTED in by_logger["app.server"]
    assert logevents.PEER_CONNECTED in by_logger["app.client"]
    assert "pulsewire" not in by_logger
    assert all(r.msg["role"] == "client" for r in caplog.records if r.name == "app.client")
