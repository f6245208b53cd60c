"""detection_quality's ``--json``: every cell's raw outcome, for tools and for the tests.

One object per scenario (the single paths, then the populations), each with its cells:
the policy, every crash trial, the live time and false deaths, and the figures derived
from them; a population's cells also list their member cells. Each scenario also carries
its adaptive configs' matches. A detection time of ``Infinity`` is a crash never detected.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from quality.matches import Match, pairings
from quality.model import Link
from quality.report import all_scenarios
from quality.study import Cell, Study


def study_json(study: Study) -> dict[str, Any]:
    paths: list[dict[str, Any]] = [{"path": _link(link)} for link, _ in study.scenarios()]
    populations: list[dict[str, Any]] = [
        {"members": [_link(link) for link in population.members]}
        for population, _ in study.populations()
    ]
    scenarios = [
        {
            "title": title,
            **where,
            "cells": [_cell(cell) for cell in cells],
            "pairings": [
                {
                    "adaptive": p.adaptive.contender.label,
                    "as_safe": _match(p.as_safe),
                    "as_fast": _match(p.as_fast),
                    "wins": p.wins,
                }
                for p in pairings(cells)
            ],
        }
        for (title, cells), where in zip(all_scenarios(study), paths + populations, strict=True)
    ]
    return {"options": asdict(study.options), "elapsed": study.elapsed, "scenarios": scenarios}


def _link(link: Link) -> dict[str, Any]:
    return {**asdict(link), "rto": link.rto}


def _cell(cell: Cell) -> dict[str, Any]:
    policy, outcome = cell.contender.policy, cell.outcome
    return {
        "policy": cell.contender.label,
        "interval": policy.interval,
        "timeout": policy.timeout,
        "min_timeout": None if policy.adaptive is None else policy.adaptive.min_timeout,
        "crashes": [asdict(crash) for crash in outcome.crashes],
        "seconds": outcome.seconds,
        "false_deaths": outcome.false_deaths,
        "false_reasons": dict(outcome.false_reasons),
        "steady_seconds": outcome.steady_seconds,
        "steady_false_deaths": outcome.steady_false_deaths,
        "accuracy": outcome.accuracy,
        "phases": dict(outcome.phases),
        "death_rate": cell.death_rate,
        "members": [_cell(member) for member in cell.members],
    }


def _match(match: Match | None) -> dict[str, Any] | None:
    if match is None:
        return None
    return {
        "fixed": match.fixed.contender.label,
        "speed": match.speed.value,
        "safety": match.safety.value,
        "result": match.result,
    }
