"""The docs say what the code does."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from pulsewire.core.frames import (
    FLAG_FIN,
    PREAMBLE,
    Close,
    CloseCode,
    Credit,
    FrameKind,
    Hello,
    Ping,
    Pong,
    ping_frame,
    pong_frame,
)
from pulsewire.core.states import mermaid_diagram
from pulsewire.testing import control_frame, data_frame, decode_control, parse_frames

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_state_diagram_in_concepts_is_drawn_from_the_transition_table() -> None:
    assert mermaid_diagram() in (DOCS / "concepts.md").read_text()


def test_protocol_page_lists_every_close_code_and_frame_kind() -> None:
    text = (DOCS / "protocol.md").read_text()
    for code in CloseCode:
        assert f"| {code.value} | {code.name} |" in text
    for kind in FrameKind:
        assert f"| {kind.value} | {kind.name} |" in text


# --------------------------------------------------------------------------------------
# The hex examples in protocol.md, against the encoder and the decoder
# --------------------------------------------------------------------------------------


def _hex_examples() -> list[tuple[str, bytes]]:
    """``(label, bytes)`` for each line of the examples block under "### Examples"."""
    text = (DOCS / "protocol.md").read_text()
    section = text[text.index("### Examples") :]
    start = section.index("```text\n") + len("```text\n")
    block = section[start : section.index("\n```", start)]
    examples: list[tuple[str, str]] = []
    for line in block.splitlines():
        if line.startswith(" "):  # the example above continues
            label, hex_text = examples[-1]
            examples[-1] = (label, hex_text + line)
            continue
        label, _, hex_text = line.partition("  ")
        examples.append((label.strip(), hex_text))
    return [(label, bytes.fromhex(hex_text.replace("|", ""))) for label, hex_text in examples]


def _data(payload: bytes, fin: bool) -> tuple[bytes, bool]:
    return payload, fin


#: What each label means: the constructors of the values the examples show.
_LABELS = {
    "PING": Ping,
    "PONG": Pong,
    "CLOSE": Close,
    "CREDIT": Credit,
    "HELLO": Hello,
    "DATA": _data,
    "preamble": PREAMBLE,
}


def _written(value: object) -> bytes:
    """The bytes pulsewire writes for ``value``."""
    if isinstance(value, bytes):
        return value  # the preamble
    if isinstance(value, tuple):
        payload, fin = value
        return data_frame(payload, fin=fin)
    # The heartbeat writers take the struct's fields, by name.
    if isinstance(value, Ping):
        return ping_frame(**msgspec.structs.asdict(value))
    if isinstance(value, Pong):
        return pong_frame(**msgspec.structs.asdict(value))
    assert isinstance(value, Hello | Close | Credit)
    return control_frame(value)


def test_protocol_page_shows_one_example_of_every_frame_kind() -> None:
    labels = [label for label, _ in _hex_examples()]
    assert labels[0] == "preamble"
    assert {label.partition("(")[0] for label in labels[1:]} == {kind.name for kind in FrameKind}


@pytest.mark.parametrize(("label", "data"), _hex_examples(), ids=lambda x: str(x)[:24])
def test_each_hex_example_is_what_the_code_writes_and_reads(label: str, data: bytes) -> None:
    value = eval(label, {"__builtins__": {}}, _LABELS)  # the label is a constructor call
    assert _written(value) == data
    if value is PREAMBLE:
        return
    (frame,) = parse_frames(data, preamble=False)
    if frame.kind is FrameKind.DATA:
        assert (frame.payload, bool(frame.flags & FLAG_FIN)) == value
    else:
        assert decode_control(frame) == value


# --------------------------------------------------------------------------------------
# Code blocks marked runnable, in README.md and docs/, run as written
# --------------------------------------------------------------------------------------

ROOT = DOCS.parent
#: The line just before a ```python block that the docs promise runs as written.
RUNNABLE = "<!-- runnable -->"
_FENCE = re.compile(
    r"^```(?P<lang>\w*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL
)
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _runnable_blocks() -> list[tuple[str, str, dict[str, str]]]:
    """``(where, code, files)``: each runnable block, with the files its page shows
    (blocks with a ``title="name"``), which it may read from its working directory."""
    found = []
    for page in _pages():
        text = page.read_text()
        fences = list(_FENCE.finditer(text))
        files = {
            title["title"]: fence["body"]
            for fence in fences
            if (title := _TITLE.search(fence["attrs"])) and "--8<--" not in fence["body"]
        }
        for fence in fences:
            before = text[: fence.start()].rstrip().rsplit("\n", 1)[-1]
            if before.strip() == RUNNABLE:
                assert fence["lang"] == "python", f"{page.name}: only python blocks run"
                line = text[: fence.start()].count("\n") + 1
                found.append((f"{page.relative_to(ROOT)}:{line}", fence["body"], files))
    return found


def test_the_runnable_convention_is_in_use() -> None:
    where = [place for place, _, _ in _runnable_blocks()]
    pages = {place.split(":")[0] for place in where}
    assert {"README.md", "docs/quickstart.md", "docs/server.md"} <= pages


@pytest.mark.parametrize(
    ("where", "code", "files"), _runnable_blocks(), ids=lambda value: str(value)[:40]
)
def test_each_runnable_block_runs_as_written(
    tmp_path: Path, where: str, code: str, files: dict[str, str]
) -> None:
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"{where}:\n{result.stderr}"
    assert "Traceback" not in result.stderr


def test_commands_in_the_docs_run_from_a_fresh_clone() -> None:
    """``python examples/x.py`` fails after the README's install unless the venv is
    active: the docs say ``.venv/bin/python`` (and ``.venv/bin/pulsewire``)."""
    bare = re.compile(r"(?<![\w/.-])python3? (?:examples/|-m pulsewire)")
    files = [*_pages(), *sorted((ROOT / "examples").glob("*.py"))]
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if bare.search(line)
    ]
    assert found == []
