"""Fixtures: a real Synapse for the session, registered accounts, the human, a log watch."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from chanmux_testservers.matrixclient import HumanMatrix

from matrix_helpers import Account, LogWatch, client, register

#: anyio_backend (both backends), synapse and synapse_rate_limited
pytest_plugins = ["chanmux_testservers.fixtures"]


@pytest.fixture(scope="session")
def bot(synapse) -> Account:
    """The bridge's account (shared by tests that do not need one of their own)."""
    return register(synapse, "bridge")


@pytest.fixture(scope="session")
def human_account(synapse) -> Account:
    return register(synapse, "human")


@pytest.fixture(scope="session")
def other_account(synapse) -> Account:
    return register(synapse, "other")


@pytest.fixture
async def human(synapse, human_account) -> AsyncIterator[HumanMatrix]:
    async with client(synapse, human_account) as h:
        yield h


@pytest.fixture
def logwatch():
    """A LogWatch on the `chanmux` loggers (INFO and up) for the test's duration."""
    watch = LogWatch()
    logger = logging.getLogger("chanmux")
    old = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(old)
