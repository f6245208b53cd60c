"""The package is ready to release: one version, true metadata, the CI the README promises."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pulsewire

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CI = (ROOT / ".ci" / "run").read_text()
README = (ROOT / "README.md").read_text()


def test_the_version_has_one_source() -> None:
    assert "version" not in PROJECT
    assert PROJECT["dynamic"] == ["version"]
    hatch = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["version"]
    assert hatch == {"path": "src/pulsewire/__init__.py"}
    assert importlib.metadata.version("pulsewire") == pulsewire.__version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert f"## [{pulsewire.__version__}] - " in changelog


def test_the_license_file_says_what_the_metadata_declares() -> None:
    assert PROJECT["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_project_urls_point_at_the_repository_and_hold_no_placeholder() -> None:
    urls = PROJECT["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Changelog", "Issues"}
    for url in urls.values():
        assert url.startswith("https://github.com/pulsewire/pulsewire")
        assert not re.search(r"example|todo|xxx|<|>|your", url, re.IGNORECASE)
    assert urls["Changelog"].endswith("/CHANGELOG.md")


def _tested_pythons() -> set[str]:
    """3.11 (the README's command on python3) and the versions .ci/run loops over."""
    loop = re.search(r"^for version in ([\d. ]+); do$", CI, re.MULTILINE)
    assert loop is not None
    return {"3.11", *loop.group(1).split()}


def test_classifiers_claim_what_ci_tests() -> None:
    classifiers = PROJECT["classifiers"]
    claimed = {
        c.rsplit(" :: ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert claimed == _tested_pythons() == {"3.11", "3.12", "3.13"}
    assert PROJECT["requires-python"] == ">=3.11"
    systems = [c for c in classifiers if c.startswith("Operating System")]
    assert systems == ["Operating System :: POSIX :: Linux"]


def test_rich_is_an_extra_that_the_readme_installs_first() -> None:
    assert not any(dep.startswith("rich") for dep in PROJECT["dependencies"])
    extras = PROJECT["optional-dependencies"]
    assert any(dep.startswith("rich") for dep in extras["cli"])
    assert "pulsewire[cli]" in extras["test"]
    assert re.match(r"pulsewire\[[^]]*\bcli\b", extras["dev"][0])
    commands = re.findall(r"^python3 -m venv \.venv && .*$", README, re.MULTILINE)
    assert commands[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[cli]'")


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    commands = re.findall(r"^python3 -m venv \.venv && .*pytest$", README, re.MULTILINE)
    assert len(commands) == 1
    assert f"\n{commands[0]}\n" in CI


#: What would make the wheel platform-specific: sources or builds of an extension module.
COMPILED = (".c", ".h", ".pyx", ".so", ".pyd")


def test_nothing_in_src_is_compiled_code() -> None:
    compiled = [path for path in (ROOT / "src").rglob("*") if path.suffix in COMPILED]
    assert compiled == []


def test_pip_wheel_builds_one_pure_python_wheel(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("pulsewire-*.whl")
    assert wheel.name == f"pulsewire-{pulsewire.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "pulsewire/py.typed" in names
    assert "pulsewire/testing/vectors.json" in names
    assert not [name for name in names if name.endswith(COMPILED)]
