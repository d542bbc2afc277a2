"""Shared pytest fixtures for the test-server harnesses."""

import pytest

from chanmux_testservers.synapse import Synapse


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    """Run every @pytest.mark.anyio test on both asyncio and trio."""
    return request.param


@pytest.fixture(scope="session")
def synapse():
    """One Synapse (rate limits lifted) for the whole session."""
    with Synapse() as hs:
        yield hs


@pytest.fixture(scope="session")
def synapse_rate_limited():
    """A second Synapse whose rc_message is low (0.5/s, burst 2), started on first use."""
    with Synapse(rate_limited=True) as hs:
        yield hs


# --- IRC servers (chanmux_testservers.irc) -------------------------------------------------


@pytest.fixture(scope="session")
def ngircd(tmp_path_factory):
    """One ngircd on loopback (plaintext + TLS) for the whole session."""
    from chanmux_testservers.irc import start_ngircd

    with start_ngircd(tmp_path_factory.mktemp("ngircd")) as server:
        yield server


@pytest.fixture(scope="session")
def inspircd(tmp_path_factory):
    """One InspIRCd with IRCv3 modules and Anope services (SASL) for the whole session."""
    from chanmux_testservers.irc import start_inspircd

    with start_inspircd(tmp_path_factory.mktemp("inspircd"), services=True) as server:
        yield server


@pytest.fixture(params=["ngircd", "inspircd"])
def ircd(request):
    """Each session IRC server in turn."""
    return request.getfixturevalue(request.param)
