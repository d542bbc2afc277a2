"""A pytest plugin: the real servers as session fixtures, for every suite that needs them.

Enable it with ``pytest_plugins = ["chanmux_testservers.fixtures"]`` in a suite's top
conftest. A suite that needs a server set up otherwise (another server name, no services)
defines a fixture of the same name in its conftest, which takes precedence.

- ``anyio_backend``: every ``@pytest.mark.anyio`` test runs on asyncio and on trio;
- ``synapse``: one Synapse with rate limits lifted; ``synapse_rate_limited`` a second one
  whose ``rc_message`` is low (0.5/s, burst 2), started on first use;
- ``ngircd``: one ngircd on loopback (plaintext and TLS); ``inspircd``: one InspIRCd with its
  IRCv3 modules and Anope services (SASL); ``ircd``: each of the two in turn;
- ``synapse_faults``: a ``FaultProxy`` (``chanmux_testservers.faults``) in front of
  ``synapse``, for one test: answers, cut replies, dropped connections and held requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .synapse import Synapse


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio."""
    return request.param


@pytest.fixture(scope="session")
def synapse() -> Iterator[Synapse]:
    """One Synapse (rate limits lifted) for the whole session."""
    with Synapse() as hs:
        yield hs


@pytest.fixture(scope="session")
def synapse_rate_limited() -> Iterator[Synapse]:
    """A second Synapse whose rc_message is low (0.5/s, burst 2), started on first use."""
    with Synapse(rate_limited=True) as hs:
        yield hs


@pytest.fixture(scope="session")
def ngircd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One ngircd on loopback (plaintext + TLS) for the whole session."""
    from .irc import start_ngircd

    with start_ngircd(tmp_path_factory.mktemp("ngircd")) as server:
        yield server


@pytest.fixture(scope="session")
def inspircd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One InspIRCd with IRCv3 modules and Anope services (SASL) for the whole session."""
    from .irc import start_inspircd

    with start_inspircd(tmp_path_factory.mktemp("inspircd"), services=True) as server:
        yield server


@pytest.fixture(params=["ngircd", "inspircd"])
def ircd(request: pytest.FixtureRequest) -> Any:
    """Each session IRC server in turn."""
    return request.getfixturevalue(request.param)


@pytest.fixture
async def synapse_faults(synapse: Synapse) -> Any:
    """A `FaultProxy` in front of the session Synapse, for one test (see ``faults``)."""
    from .faults import FaultProxy

    async with FaultProxy(synapse.base_url) as proxy:
        yield proxy
