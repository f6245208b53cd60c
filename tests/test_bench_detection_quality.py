"""benchmarks/detection_quality.py, run as a program: its smoke run works and is sane.

The study itself takes minutes; ``--smoke`` (the model's and the matches' rule checks,
then three paths, one population, three policies, a few simulated minutes each) runs in
about a second. These tests read its exit status, its report and its ``--json`` output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "detection_quality.py"


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    study: dict[str, Any]
    results_written: bool


def run_smoke(directory: Path) -> Run:
    output, results = directory / "study.json", directory / "RESULTS.md"
    argv = ["--smoke", "--json", str(output), "--results", str(results)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=120
    )
    study = json.loads(output.read_text()) if output.exists() else {}
    return Run(done.returncode, done.stdout, done.stderr, study, results.exists())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_smoke(tmp_path_factory.mktemp("smoke"))


def scenario(run: Run, title: str) -> dict[str, Any]:
    return next(s for s in run.study["scenarios"] if s["title"] == title)


def cells(run: Run, title: str) -> dict[str, dict[str, Any]]:
    return {cell["policy"]: cell for cell in scenario(run, title)["cells"]}


def path_cells(run: Run) -> Iterator[dict[str, Any]]:
    for found in run.study["scenarios"]:
        if "path" in found:
            yield from found["cells"]


def test_smoke_passes_every_rule_check_and_writes_no_results(smoke: Run) -> None:
    assert smoke.returncode == 0, smoke.stderr[-3000:]
    assert "rule checks: 7 of 7 hold" in smoke.stdout
    assert "broken rule" not in smoke.stderr
    assert not smoke.results_written, "--smoke must not write the results file"


def test_smoke_report_has_one_table_per_scenario(smoke: Run) -> None:
    text = smoke.stdout
    lines = text.splitlines()
    assert [s["title"] for s in smoke.study["scenarios"]] == [
        "LAN 0%",
        "jittery WAN 10%",
        "WAN changing 0%/10%",
        "mixed paths",
    ]
    assert "### LAN (RTT 0.2 ms, no jitter), loss 0%" in text
    assert "### jittery WAN (RTT 20 ms + 0-100 ms per direction), loss 10%" in text
    assert "changing: 10% for the last 5 min of every 10" in text
    assert "### Population: mixed paths (LAN 0%, jittery WAN 10%; one policy for all)" in text
    assert sum(line.startswith("| policy | crashes | T_D p50 s |") for line in lines) == 3
    assert sum(line.startswith("| policy | T_D p50 / p99 s, clean phase") for line in lines) == 1
    assert sum(line.startswith("| adaptive | steady / conn-h |") for line in lines) == 4
    assert text.count("**Verdict: ") == 4
    assert "### Summary" in text
    assert "| scenario | adaptive F=1.25 φ=8 tail 3 |" in text


def test_smoke_prints_the_results_section_in_its_short_shape(smoke: Run) -> None:
    section = smoke.stdout.split("## detection_quality: detection quality model\n", 1)[1]
    assert section.startswith("\n**Claim:** ")
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 4  # header, rule, one row per scenario
    assert rows[2].startswith("| LAN 0% | ")
    assert "- Measured " in section
    assert "- Command: `python benchmarks/detection_quality.py --smoke" in section


def test_rto_follows_linux_on_each_profile(smoke: Run) -> None:
    rtos = {s["path"]["name"]: s["path"]["rto"] for s in smoke.study["scenarios"] if "path" in s}
    assert rtos == pytest.approx({"LAN": 0.2002, "jittery WAN": 0.32, "WAN": 0.25})


def test_smoke_crash_trials_are_all_detected_by_timeout(smoke: Run) -> None:
    for cell in path_cells(smoke):
        assert len(cell["crashes"]) == 10
        assert {crash["reason"] for crash in cell["crashes"]} == {"timeout"}
        assert 0.0 < cell["accuracy"] <= 1.0


def test_smoke_lossless_lan_has_no_false_deaths_and_bounded_detection(smoke: Run) -> None:
    lan = scenario(smoke, "LAN 0%")
    assert lan["path"]["loss"] == 0
    assert lan["path"]["jitter"] == 0
    for cell in lan["cells"]:
        assert cell["false_deaths"] == 0
        assert cell["accuracy"] == 1.0
        # The last evidence comes at most one interval (plus a round trip) before the
        # crash, or one one-way delay after it (in flight); the verdict `timeout` later.
        shortest = cell["min_timeout"] if cell["min_timeout"] is not None else cell["timeout"]
        floor, ceiling = shortest - cell["interval"], cell["timeout"]
        slack = lan["path"]["rtt"]
        for crash in cell["crashes"]:
            assert floor - slack <= crash["detection_time"] <= ceiling + slack
            assert crash["survivor_timeout"] <= ceiling


def test_smoke_lossy_link_kills_short_timeouts_more_often(smoke: Run) -> None:
    assert scenario(smoke, "jittery WAN 10%")["path"]["loss"] == 0.10
    by_policy = cells(smoke, "jittery WAN 10%")
    short, long = by_policy["fixed T=1.5"], by_policy["fixed T=3"]
    assert short["false_deaths"] > 0
    assert short["death_rate"] > long["death_rate"]


def test_smoke_changing_path_reports_both_phases(smoke: Run) -> None:
    changing = scenario(smoke, "WAN changing 0%/10%")
    assert changing["path"]["degraded_loss"] == 0.10
    for cell in changing["cells"]:
        assert {crash["phase"] for crash in cell["crashes"]} <= {"clean", "degraded"}
        phases = {"clean": 0, "degraded": 0, "onset": 0, **cell["phases"]}
        assert set(phases) <= {"clean", "degraded", "onset"}
        assert phases["clean"] + phases["degraded"] == cell["false_deaths"]
        assert phases["onset"] <= phases["degraded"]
    steady = scenario(smoke, "LAN 0%")["cells"]
    assert all(not crash["phase"] for cell in steady for crash in cell["crashes"])


def test_smoke_population_pools_its_member_paths(smoke: Run) -> None:
    population = scenario(smoke, "mixed paths")
    paths = [s for s in smoke.study["scenarios"] if "path" in s]
    members = [next(s for s in paths if s["path"] == link) for link in population["members"]]
    assert [s["title"] for s in members] == ["LAN 0%", "jittery WAN 10%"]
    for cell in population["cells"]:
        # Each member is that policy's own cell on the member path, pooled side by side.
        own = [next(c for c in s["cells"] if c["policy"] == cell["policy"]) for s in members]
        assert cell["members"] == own
        assert cell["seconds"] == pytest.approx(sum(m["seconds"] for m in own))
        assert cell["steady_false_deaths"] == sum(m["steady_false_deaths"] for m in own)
        pooled = sorted(crash["detection_time"] for crash in cell["crashes"])
        assert pooled == sorted(c["detection_time"] for m in own for c in m["crashes"])


def test_same_seed_gives_the_same_study(smoke: Run, tmp_path: Path) -> None:
    again = run_smoke(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.study["scenarios"] == smoke.study["scenarios"]
