"""``pulsewire.core`` is sans-I/O: it imports no I/O or clock module and calls no clock."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pulsewire.core

CORE = Path(pulsewire.core.__file__).parent
MODULES = sorted(CORE.rglob("*.py"))

BANNED_IMPORTS = {
    "anyio",
    "asyncio",
    "datetime",
    "selectors",
    "socket",
    "structlog",
    "threading",
    "time",
    "trio",
    "uvloop",
}
CLOCK_CALLS = {
    "clock_gettime",
    "monotonic",
    "monotonic_ns",
    "now",
    "perf_counter",
    "perf_counter_ns",
    "process_time",
    "sleep",
    "time",
    "time_ns",
    "today",
    "utcnow",
}


def violations(source: str) -> list[str]:
    """Banned imports and clock-like calls in ``source``, as readable strings."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in CLOCK_CALLS:
                found.append(f"line {node.lineno}: calls {name}()")
            continue
        else:
            continue
        found += [
            f"line {node.lineno}: imports {name}"
            for name in names
            if name.partition(".")[0] in BANNED_IMPORTS
        ]
    return found


def test_core_has_modules() -> None:
    assert {"session.py", "codec.py", "liveness.py"} <= {path.name for path in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_core_module_imports_no_io_and_reads_no_clock(path: Path) -> None:
    assert violations(path.read_text()) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import asyncio",
        "import time as t",
        "from socket import socket",
        "import structlog.stdlib",
        "from selectors import DefaultSelector",
        "x = loop.time()",
        "from os import x\nmonotonic()",
        "datetime.datetime.now()",
    ],
)
def test_checker_catches_a_violation(snippet: str) -> None:
    assert violations(snippet)


def test_checker_allows_now_as_a_plain_value() -> None:
    assert violations("def f(now: float) -> float:\n    return now + 1") == []


def test_core_imports_where_io_modules_cannot_be_imported() -> None:
    # A stub parent package keeps pulsewire/__init__.py (which loads the drivers) out of it.
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys, types
        for name in ("asyncio", "anyio", "socket", "selectors", "structlog", "trio"):
            sys.modules[name] = None
        stub = types.ModuleType("pulsewire")
        stub.__path__ = [{str(CORE.parent)!r}]
        sys.modules["pulsewire"] = stub
        import pulsewire.core
        for info in pkgutil.iter_modules(pulsewire.core.__path__, "pulsewire.core."):
            importlib.import_module(info.name)
        print(sorted(name for name in sys.modules if name.startswith("pulsewire.core")))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "pulsewire.core.session" in result.stdout


# ---------------------------------------------------------------- one-way dependencies

SRC = CORE.parent


def _runtime_imports(path: Path) -> set[str]:
    """The pulsewire modules ``path`` imports at run time (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text())
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only |= {id(child) for child in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.startswith("pulsewire")}


def test_errors_imports_nothing_of_pulsewire_at_run_time() -> None:
    assert _runtime_imports(SRC / "errors.py") == set()


def test_the_asyncio_driver_depends_one_way() -> None:
    driver = {path.stem: path for path in (SRC / "asyncio").glob("*.py")}
    graph = {
        name: {
            module.rpartition(".")[2]
            for module in _runtime_imports(path)
            if module.startswith("pulsewire.asyncio.")
        }
        for name, path in driver.items()
    }
    # The protocol knows the session and the scheduler only; the connection knows the
    # protocol; the server and the client build on both.
    assert graph["scheduler"] == set()
    assert graph["protocol"] == {"scheduler"}
    assert graph["connection"] == {"protocol"}
    assert not graph["server"] & {"client"}
    assert not graph["client"] & {"server"}
    # Opening a connection (every way in) knows the connection and below, nothing above.
    assert graph["arguments"] == set()
    assert graph["opening"] <= {"arguments", "connection", "protocol", "scheduler"}
    assert not graph["streams"] & {"client", "server"}
    # And no cycle anywhere.
    visiting: list[str] = []

    def visit(name: str) -> None:
        assert name not in visiting, f"import cycle: {' -> '.join([*visiting, name])}"
        visiting.append(name)
        for imported in graph.get(name, ()):
            visit(imported)
        visiting.pop()

    for name in graph:
        visit(name)


def _package_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports at run time."""
    return {
        path.stem: {
            module.rpartition(".")[2]
            for module in _runtime_imports(path)
            if module.startswith(f"pulsewire.{package}.")
        }
        for path in (SRC / package).glob("*.py")
        if path.stem != "__init__"
    }


def test_the_anyio_driver_depends_one_way() -> None:
    graph = _package_graph("anyio")
    assert graph["attributes"] == set()
    assert graph["driver"] == set()
    assert graph["connection"] == {"attributes", "driver"}
    assert graph["server"] <= {"connection", "driver"}
    assert graph["client"] <= {"connection", "driver"}
    # Of the asyncio driver it uses the loop-wide scheduler only (on asyncio loops).
    asyncio_used = {
        module
        for path in (SRC / "anyio").glob("*.py")
        for module in _runtime_imports(path)
        if module.startswith("pulsewire.asyncio")
    }
    assert asyncio_used == {"pulsewire.asyncio.scheduler"}


def test_the_shared_driver_kit_imports_no_driver() -> None:
    for path in (SRC / "driverkit").glob("*.py"):
        imported = _runtime_imports(path)
        assert not {m for m in imported if m.startswith(("pulsewire.asyncio", "pulsewire.anyio"))}
    for path in (SRC / "asyncio").glob("*.py"):
        assert not {m for m in _runtime_imports(path) if m.startswith("pulsewire.anyio")}
