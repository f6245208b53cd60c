"""A griffe extension: pulsewire's reST-flavoured docstrings, readable as Markdown.

The docstrings use Sphinx roles (``:class:`~pulsewire.Policy```), ``::`` before literal
blocks, and a backslash before a space to join words (``Wire``s). mkdocstrings renders
Markdown, so each role becomes a code span (``~`` keeps the last name only, as Sphinx
does), ``::`` a single colon (the indented block that follows is already a Markdown code
block), and the escaped space nothing.

Attributes, struct fields, enum members and constants are documented the Sphinx way too,
with a ``#:`` comment on the same line or on the lines just above; griffe reads only
docstrings, so the comment becomes the attribute's docstring here (without it, the
attribute would be missing from the reference). Loaded by ``mkdocs.yml``; not part of the
package.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj|const):`(~?)([^`]+)`")
_LITERAL = re.compile(r"(\S)::$", re.MULTILINE)
_ESCAPED_SPACE = re.compile(r"\\ ")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def markdown(text: str) -> str:
    """``:class:`~a.B``` -> `` `B` ``, ``is::`` -> ``is:``, backslash-space -> nothing."""
    text = _ROLE.sub(_role, text)
    text = _ESCAPED_SPACE.sub("", text)  # reST's escaped space joins words: nothing in Markdown
    return _LITERAL.sub(r"\1:", text)


def doc_comment(lines: list[str], first: int, last: int) -> str | None:
    """The ``#:`` comment of the statement on lines ``first`` to ``last`` (1-based): on one
    of its lines, or on the lines right above it."""
    for line in lines[first - 1 : last]:
        if "#:" in line:
            return line.split("#:", 1)[1].strip()
    above: list[str] = []
    index = first - 2
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        above.insert(0, lines[index].lstrip()[2:].strip())
        index -= 1
    return " ".join(above) or None


class ReSTRoles(griffe.Extension):
    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        filepath = attr.filepath
        if attr.docstring is not None or attr.lineno is None or not isinstance(filepath, Path):
            return
        if filepath not in attr.lines_collection:
            return
        lines = attr.lines_collection[filepath]
        comment = doc_comment(lines, attr.lineno, attr.endlineno or attr.lineno)
        if comment:
            attr.docstring = griffe.Docstring(comment, lineno=attr.lineno, parent=attr)

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
