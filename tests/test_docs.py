"""The docs say what the code does."""

from __future__ import annotations

from pathlib import Path

from pulsewire.core.frames import CloseCode, FrameKind
from pulsewire.core.states import mermaid_diagram

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_state_diagram_in_concepts_is_drawn_from_the_transition_table() -> None:
    assert mermaid_diagram() in (DOCS / "concepts.md").read_text()


def test_protocol_page_lists_every_close_code_and_frame_kind() -> None:
    text = (DOCS / "protocol.md").read_text()
    for code in CloseCode:
        assert f"| {code.value} | {code.name} |" in text
    for kind in FrameKind:
        assert f"| {kind.value} | {kind.name} |" in text
