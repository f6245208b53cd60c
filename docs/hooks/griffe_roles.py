"""A griffe extension: pulsewire's reST-flavoured docstrings, readable as Markdown.

The docstrings use Sphinx roles (``:class:`~pulsewire.Policy```), ``::`` before literal
blocks, and a backslash before a space to join words (``Wire``s). mkdocstrings renders
Markdown, so each role becomes a code span (``~`` keeps the last name only, as Sphinx
does), ``::`` a single colon (the indented block that follows is already a Markdown code
block), and the escaped space nothing. Loaded by ``mkdocs.yml``; not part of the package.
"""

from __future__ import annotations

import re
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


class ReSTRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
