"""Fixtures of the end-to-end suite: real servers for the whole session, a bridge per module or
per test, and the anyio backend each async test runs on.

Servers (ngircd, InspIRCd, Synapse, PostgreSQL) start once per session on loopback. Each test
uses channel and room names of its own, so tests never see each other's traffic. The bridge
always runs as `chanmux run CONFIG` in a child process, started with `--backend` equal to the
test's anyio backend: running a test "on trio" runs the bridge on trio too.
"""

from __future__ import annotations

import pytest

from chanmux_testservers.irc import start_inspircd
from chanmux_testservers.synapse import Synapse

#: ngircd comes from the harness; synapse, inspircd and anyio_backend are set up here otherwise
pytest_plugins = ["chanmux_testservers.postgres", "chanmux_testservers.fixtures"]

BACKENDS = ["asyncio", "trio"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "label(**keys): per-label settings a module's shared bridge "
                            "gives the test's channel pair (see the module)")


@pytest.fixture(scope="module", params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio, and so does the bridge it talks to.

    Module scope, so a module whose tests share one bridge starts it once per backend.
    """
    return request.param


@pytest.fixture(scope="session")
def synapse():
    """One Synapse for the session (rate limits lifted; cheap password hashing, since every
    module registers its own accounts)."""
    with Synapse(server_name="chanmux.e2e", extra_config={"bcrypt_rounds": 4}) as hs:
        yield hs


@pytest.fixture(scope="session")
def inspircd(tmp_path_factory: pytest.TempPathFactory):
    """One InspIRCd with its IRCv3 modules (message tags, msgid, echo-message) for the session;
    no services: the suite does not log in with SASL."""
    with start_inspircd(tmp_path_factory.mktemp("inspircd"), services=False) as server:
        yield server


class AppService:
    """A Synapse that loaded the bridge's application-service registration, as an operator
    sets one up: the registration written by `chanmux matrix-registration` from a config whose
    `[http] listen` is `listen`, listed in the homeserver's app_service_config_files."""

    def __init__(self, synapse: Synapse, registration, listen: str, bot: str) -> None:
        self.synapse = synapse
        self.registration = registration
        self.listen = listen
        self.bot = bot
        self.hs_token = registration.read_text().split("hs_token: ", 1)[1].split()[0]

    def plug(self, rooms=(), **keys):
        """The keys of the application-service `matrix` plug."""
        return {"type": "matrix", "homeserver": self.synapse.base_url, "user_id": self.bot,
                "registration": str(self.registration), "ghost_prefix": "chanmux_",
                "rooms": list(rooms), **keys}

    def http(self):
        return {"listen": self.listen, "public_url": f"http://{self.listen}"}


@pytest.fixture(scope="session")
def appservice(tmp_path_factory: pytest.TempPathFactory):
    import subprocess
    import sys

    from chanmux_testservers.synapse import free_port

    folder = tmp_path_factory.mktemp("appservice")
    listen = f"127.0.0.1:{free_port()}"
    server, bot = "chanmux.as", "@chanmux:chanmux.as"
    config = folder / "bridge.toml"
    config.write_text(f'[http]\nlisten = "{listen}"\n\n[plugs.matrix]\ntype = "matrix"\n'
                      f'homeserver = "http://127.0.0.1:1"\nuser_id = "{bot}"\n'
                      f'registration = "registration.yaml"\n')
    subprocess.run([sys.executable, "-m", "chanmux.cli", "matrix-registration", str(config)],
                   check=True, capture_output=True, text=True, timeout=60)
    registration = folder / "registration.yaml"
    with Synapse(server_name=server, extra_config={
            "bcrypt_rounds": 4, "app_service_config_files": [str(registration)]}) as hs:
        yield AppService(hs, registration, listen, bot)
