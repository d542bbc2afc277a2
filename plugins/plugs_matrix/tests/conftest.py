"""Fixtures: a real Synapse for the session, registered accounts, the human, a log watch."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from chanmux_matrix.appservice import Registration
from chanmux_testservers.matrixclient import HumanMatrix
from chanmux_testservers.synapse import Synapse, free_port

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


@attrs.frozen
class AppServiceSetup:
    """A homeserver that knows the bridge as an application service."""

    synapse: Synapse
    registration: Path  # the file the homeserver loaded
    port: int  # where the bridge must listen for the homeserver's calls
    bot: str  # the bridge account (the registration's sender)

    def host_config(self, rooms: list[str], **extra: Any) -> dict[str, Any]:
        """A host with a memory plug `irc` (#irc), the application-service plug `mx` in
        `rooms` (the first as channel `room`), a recorder `rec` and the listener."""
        plug = {"type": "matrix", "homeserver": self.synapse.base_url, "user_id": self.bot,
                "registration": str(self.registration), "rooms": list(rooms),
                "retry_max_delay": 1.0, **extra}
        config: dict[str, Any] = {
            "plugs": {"mx": plug, "irc": {"type": "memory"}},
            "channels": {"irc": {"plug": "irc", "source": "#irc"}},
            "hooks": {"rec": {"type": "recorder"}},
            "http": {"listen": f"127.0.0.1:{self.port}"},
        }
        if rooms:
            config["channels"]["room"] = {"plug": "mx", "source": rooms[0]}
        return config


@pytest.fixture(scope="session")
def appservice(tmp_path_factory) -> Iterator[AppServiceSetup]:
    """A second Synapse with the bridge's application-service registration loaded (written
    by the plug's own `Registration`, as `chanmux matrix-registration` does)."""
    folder = tmp_path_factory.mktemp("appservice")
    port = free_port()
    bot = "@chanmux:chanmux.test"
    registration = Registration.new(plug="mx", url=f"http://127.0.0.1:{port}", user_id=bot,
                                    prefix="chanmux_")
    path = folder / "registration.yaml"
    path.write_text(registration.dump())
    with Synapse(extra_config={"app_service_config_files": [str(path)]}) as hs:
        yield AppServiceSetup(hs, path, port, bot)


@pytest.fixture
async def person(appservice) -> AsyncIterator[HumanMatrix]:
    """A person on the application service's homeserver, with a public room of their own
    (`person.room`)."""
    account = register(appservice.synapse, "human")
    async with client(appservice.synapse, account) as human:
        human.room = await human.create_room(name="bridged", preset="public_chat")  # type: ignore[attr-defined]
        yield human
