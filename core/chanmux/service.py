"""Telling a service manager how the bridge is: systemd's notify protocol (`Type=notify`).

systemd gives a `Type=notify` service the address of a unix datagram socket in
`$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace) and reads `KEY=VALUE` lines
from each datagram sent there. `chanmux run` sends `STATUS=...` lines a person reading
`systemctl status` understands ("1 of 2 plugs connected; waiting for libera (connecting)"),
`READY=1` once every plug is connected, `RELOADING=1` then `READY=1` again around the
reopening of the log file at SIGHUP (so `systemctl reload` returns once it is done), and
`STOPPING=1` when it stops. Without
`NOTIFY_SOCKET` nothing is sent; a socket that cannot be reached is one warning, and the
bridge runs on.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import anyio

from .errors import describe

if TYPE_CHECKING:
    from .host import Host

log = logging.getLogger("chanmux.service")

#: The environment variable systemd sets for a `Type=notify` service (see sd_notify(3)).
NOTIFY_ENV = "NOTIFY_SOCKET"
#: Seconds between looks at the plugs' states for `STATUS=` (a plug reconnecting, say); a plug
#: becoming connected is seen at once.
STATUS_INTERVAL = 5.0
#: How a plug's state reads in `STATUS=` while it is not connected.
_WAITING = {"idle": "not started", "starting": "connecting", "failed": "reconnecting",
            "stopping": "stopping", "stopped": "stopped"}
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


class Notifier:
    """Sends `KEY=VALUE` datagrams to the service manager at `address` (as `NOTIFY_SOCKET`
    gives it); with no address every call does nothing."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._socket: socket.socket | None = None
        self._warned = False
        self.ready = False
        self.stopping = False
        #: The last `STATUS=` sent.
        self.said: str | None = None

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for `NOTIFY_SOCKET` in `env` (by default the process's environment)."""
        return cls((os.environ if env is None else env).get(NOTIFY_ENV))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send one datagram of `KEY=VALUE` lines (`send(READY="1", STATUS="...")`); True if
        it was sent. Never blocks and never raises: the first failure is a warning, later
        ones are logged at DEBUG."""
        if self.address is None:
            return False
        data = "".join(f"{key}={_LINE_BREAKS.sub(' ', value)}\n"
                       for key, value in fields.items()).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)  # a manager that is not reading never holds the loop
            self._socket.sendto(data, _socket_address(self.address))
            self.said = fields.get("STATUS", self.said)
        except (OSError, ValueError) as exc:
            what = ", ".join(f"{k}={v}" for k, v in fields.items() if k != "STATUS") or "STATUS"
            if not self._warned:
                self._warned = True
                log.warning("%s=%s: cannot tell the service manager %s (%s); the bridge runs on "
                            "without telling it how it is", NOTIFY_ENV, self.address, what,
                            describe(exc))
            else:
                log.debug("%s=%s: cannot send %s (%s)", NOTIFY_ENV, self.address, what,
                          describe(exc))
            return False
        return True

    def status(self, text: str) -> None:
        """`STATUS=text`: one line saying what the bridge is doing."""
        self.send(STATUS=text)

    def reloading(self) -> bool:
        """`RELOADING=1` if the manager has heard `READY=1` (and no `STOPPING=1`): the
        bridge is acting on SIGHUP; `reloaded` says when it is done. True if sent."""
        if not self.ready or self.stopping:
            return False
        return self.send(RELOADING="1", MONOTONIC_USEC=str(time.monotonic_ns() // 1000))

    def reloaded(self) -> None:
        """`READY=1` again after `reloading`, with the status as it was."""
        self.send(READY="1", STATUS=self.said or "running")

    def stop(self, text: str = "stopping: closing hooks and plugs") -> None:
        """`STOPPING=1` (once) with a status saying so."""
        if not self.stopping:
            self.stopping = True
            self.send(STOPPING="1", STATUS=text)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def follow(self, host: Host, interval: float = STATUS_INTERVAL) -> None:
        """Tell the manager about a running host until cancelled: `STATUS=` whenever what it
        would say changes, and `READY=1` (once) as soon as every plug is connected."""
        if self.address is None:
            return
        said = None
        while True:
            waiting = [name for name in host.plugs if not host.plug_ready(name)]
            text = plugs_status(host)
            if not waiting and not self.ready and not self.stopping:
                self.ready = True
                self.send(READY="1", STATUS=text)
            elif text != said:
                self.status(text)
            said = text
            with anyio.move_on_after(interval):
                async with anyio.create_task_group() as tg:
                    for name in waiting:
                        tg.start_soon(_until_ready, host, name, tg.cancel_scope)
                    if not waiting:
                        await anyio.sleep_forever()


async def _until_ready(host: Host, name: str, scope: anyio.CancelScope) -> None:
    await host.until_ready(name)
    scope.cancel()


def plugs_status(host: Host) -> str:
    """What `STATUS=` says of a host's plugs: "running: 3 plugs connected", or "2 of 3 plugs
    connected; waiting for libera (reconnecting)"."""
    names = list(host.plugs)
    waiting = [name for name in names if not host.plug_ready(name)]
    if not waiting:
        return f"running: {len(names)} plug{'' if len(names) == 1 else 's'} connected"
    details = ", ".join(f"{name} ({_WAITING.get(host.plug_state(name), host.plug_state(name))})"
                        for name in waiting)
    return f"{len(names) - len(waiting)} of {len(names)} plugs connected; waiting for {details}"


def _socket_address(address: str) -> str | bytes:
    """The `sendto` address of `NOTIFY_SOCKET`: a leading `@` is the abstract namespace."""
    if address.startswith("@"):
        return b"\0" + address[1:].encode()
    if not address.startswith("/"):
        raise ValueError("only a unix socket path or an @abstract name is supported")
    return address


__all__ = ["NOTIFY_ENV", "Notifier", "plugs_status"]
