"""The API reference documents every public name: a public member without reference docs
fails here.

The site is built as ``.ci/run`` builds it (``mkdocs build --strict``), and its inventory
(``objects.inv``, the list of every object the reference renders) must hold each name in
``pulsewire.__all__`` and in the public modules' ``__all__``, and, for each class among
them, every public attribute: methods, properties, fields, enum members, the attributes
its ``__init__`` sets, and async iteration (``__aiter__``). mkdocstrings leaves out
members without a docstring (or a ``#:`` comment), so an undocumented one is missing.
"""

from __future__ import annotations

import ast
import enum
import inspect
import os
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import pulsewire
import pulsewire.anyio
import pulsewire.errors
import pulsewire.kernel
import pulsewire.logevents
import pulsewire.testing

ROOT = Path(__file__).resolve().parent.parent

#: The public modules, by the name the reference gives them.
MODULES: dict[str, ModuleType] = {
    "pulsewire": pulsewire,
    "pulsewire.anyio": pulsewire.anyio,
    "pulsewire.errors": pulsewire.errors,
    "pulsewire.kernel": pulsewire.kernel,
    "pulsewire.logevents": pulsewire.logevents,
    "pulsewire.testing": pulsewire.testing,
}
#: Dunder methods that users call through syntax and whose behaviour needs saying.
PUBLIC_DUNDERS = {"__aiter__", "__anext__"}


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    header, _, body = (site / "objects.inv").read_bytes().partition(b"compressed using zlib.\n")
    assert header.startswith(b"# Sphinx inventory version 2")
    return {line.split(" ", 1)[0] for line in zlib.decompress(body).decode().splitlines()}


def _init_attributes(cls: type) -> Iterator[str]:
    """The ``self.name`` attributes that ``cls.__init__`` assigns."""
    init = vars(cls).get("__init__")
    try:
        source = inspect.getsource(init)
    except (OSError, TypeError):  # none, or generated (a dataclass's): no self.x of its own
        return
    tree = ast.parse(textwrap.dedent(source))
    for node in ast.walk(tree):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                yield target.attr


def _members(cls: type) -> set[str]:
    """The public attributes of ``cls``, its own and those of its pulsewire base classes."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("pulsewire"):
            continue
        names |= {name for name in vars(klass) if name in PUBLIC_DUNDERS}
        names |= {name for name in vars(klass) if not name.startswith("_")}
        names |= set(getattr(klass, "__struct_fields__", ()))
        names |= {name for name in _init_attributes(klass) if not name.startswith("_")}
    if issubclass(cls, enum.Enum):
        names |= set(cls.__members__)
    return names


def public_names() -> list[str]:
    names = []
    for prefix, module in MODULES.items():
        for name in module.__all__:
            if name == "__version__":
                continue
            names.append(f"{prefix}.{name}")
            value = getattr(module, name)
            if inspect.isclass(value):
                names += [f"{prefix}.{name}.{member}" for member in sorted(_members(value))]
    return names


def _documented(name: str, inventory: set[str]) -> bool:
    """``pulsewire.PeerDeadError.reason`` is documented as such, or wherever the same
    object is documented: under another public module that exports it
    (``pulsewire.anyio.ClientStats`` is ``pulsewire.ClientStats``), or under the module
    that defines it (``pulsewire.errors.PeerDeadError.reason``)."""
    if name in inventory:
        return True
    for prefix, module in MODULES.items():
        if not name.startswith(f"{prefix}."):
            continue
        top, _, member = name[len(prefix) + 1 :].partition(".")
        if top not in module.__all__:
            continue
        value = getattr(module, top)
        homes = [
            f"{other}.{exported}"
            for other, public in MODULES.items()
            for exported in public.__all__
            if getattr(public, exported) is value
        ]
        defined_in = getattr(value, "__module__", None)
        if defined_in in MODULES:
            homes.append(f"{defined_in}.{top}")
        suffix = f".{member}" if member else ""
        if any(f"{home}{suffix}" in inventory for home in homes):
            return True
    return False


def test_the_reference_documents_every_public_name(inventory: set[str]) -> None:
    missing = [name for name in public_names() if not _documented(name, inventory)]
    assert missing == [], (
        "public names without reference docs (add a docstring or a #: comment, and list "
        f"new top-level names in docs/reference/api.md): {missing}"
    )


def test_the_reference_lists_no_private_name(inventory: set[str]) -> None:
    private = [
        name
        for name in inventory
        if name.startswith("pulsewire.")
        and any(part.startswith("_") and part not in PUBLIC_DUNDERS for part in name.split("."))
    ]
    assert private == []


def test_the_member_list_sees_what_it_should() -> None:
    """The test above checks what it claims: members of each kind are found."""
    names = set(public_names())
    for expected in (
        "pulsewire.Client.__aiter__",  # async iteration
        "pulsewire.Client.host",  # set in __init__
        "pulsewire.Connection.peer_name",  # a property
        "pulsewire.Listener.serve_forever",  # a method
        "pulsewire.Policy.interval",  # a struct field
        "pulsewire.State.ALIVE",  # an enum member
        "pulsewire.PeerDeadError.reason",  # inherited from a pulsewire base class
        "pulsewire.logevents.PEER_DEAD",  # a constant of a public module
        "pulsewire.testing.load_vectors",
    ):
        assert expected in names
    assert "pulsewire.Policy.__post_init__" not in names
    assert sys.modules["pulsewire"] is pulsewire
