"""pytest plugin of the chanmux test kit (registered through the `pytest11` entry point)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .fixtures import run_host


@pytest.fixture
def chanmux_host(tmp_path: Any) -> Callable[..., Any]:
    """A factory: `async with chanmux_host(config_dict) as host:` runs a host whose database
    is a SQLite file in the test's temporary folder."""

    def factory(config: dict[str, Any], **kwargs: Any) -> Any:
        kwargs.setdefault("path", tmp_path / "chanmux.toml")
        return run_host(config, **kwargs)

    return factory
