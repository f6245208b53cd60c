"""The compiled fast paths under AddressSanitizer and UndefinedBehaviorSanitizer.

Bad input must never crash the process: this builds ``_heartbeat.c`` with both sanitizers
(and every warning an error) into a copy of the source tree, and runs the tests of the
compiled code against it in a child process, where any out-of-bounds access, use after
free or undefined arithmetic aborts the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "pulsewire" / "core" / "_heartbeat.c"


def _runtime(compiler: str, library: str) -> str | None:
    """The path of a sanitizer runtime the compiler ships, or None."""
    found = subprocess.run(
        [compiler, f"-print-file-name={library}"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


@pytest.mark.slow
def test_the_compiled_fast_paths_are_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    compiler = shutil.which("gcc")
    if compiler is None:
        pytest.skip("no gcc to build the sanitized extension with")
    asan, ubsan = _runtime(compiler, "libasan.so"), _runtime(compiler, "libubsan.so")
    if asan is None or ubsan is None:
        pytest.skip("gcc has no libasan/libubsan runtime here")
    tree = tmp_path / "src"
    shutil.copytree(
        ROOT / "src", tree, ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info")
    )
    built = tree / "pulsewire" / "core" / f"_heartbeat{sysconfig.get_config_var('EXT_SUFFIX')}"
    flags = ["-g", "-O1", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
    flags += ["-fno-sanitize-recover=undefined", "-Wall", "-Wextra", "-Werror", "-fPIC"]
    include = f"-I{sysconfig.get_paths()['include']}"
    subprocess.run(
        [compiler, *flags, "-shared", include, str(SOURCE), "-o", str(built)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    env = dict(os.environ)
    env.pop("PULSEWIRE_NO_EXTENSIONS", None)
    env.update(
        LD_PRELOAD=f"{asan} {ubsan}",
        ASAN_OPTIONS="detect_leaks=0",  # CPython's own allocations at exit are not ours
        PYTHONMALLOC="malloc",  # every object from malloc, where the sanitizer sees its bounds
        PYTHONPATH=str(tree),
    )
    which = subprocess.run(
        [sys.executable, "-c", "import pulsewire.core._heartbeat as h; print(h.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert which.stdout.strip() == str(built), which.stdout + which.stderr
    tests = ["tests/core/test_heartbeat_compiled.py", "tests/core/test_heartbeat_fast_path.py"]
    result = subprocess.run(
        # -s: a sanitizer's report goes to the real stderr, not to a capture lost on abort.
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            *tests,
            "-k",
            "compiled",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout[-4000:] + result.stderr[-4000:]
    assert result.returncode == 0, output
    assert " passed" in result.stdout, output
    assert "skipped" not in result.stdout, output
