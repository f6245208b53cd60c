"""The anyio driver's own tests run on asyncio and on trio (anyio's pytest plugin)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(
    params=[pytest.param(("asyncio", {}), id="asyncio"), pytest.param(("trio", {}), id="trio")]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param
