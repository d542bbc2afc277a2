"""Base classes for plugs (network connections) and hooks (features), with their lifecycle."""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from .model import Channel, Message, Receipt, SentMessage, User

if TYPE_CHECKING:
    from .host import Host


@attrs.frozen
class NoConfig:
    """Config class of a plug or hook type that takes no keys."""


class State(enum.Enum):
    """Where a plug or hook is in its life."""

    idle = "idle"
    starting = "starting"
    active = "active"
    stopping = "stopping"
    stopped = "stopped"
    failed = "failed"


@attrs.frozen
class Capabilities:
    """What a network can do, so hooks adapt: edit in place, delete, reply natively, ..."""

    edit: bool = False
    delete: bool = False
    reply: bool = False
    upload: bool = False
    rich_text: bool = True
    actions: bool = True
    joins: bool = True
    titles: bool = True
    message_ids: bool = True
    max_message_bytes: int | None = None
    #: (0.2.4) reactions can be shown (natively, or as the plug renders them)
    reactions: bool = False
    #: (0.2.4) the plug implements `typing` (shows that a person of another network types)
    typing: bool = False
    #: (0.2.4) a name said in text notifies the person of that name (IRC): relays break such
    #: names there (`no_highlight`), and only there
    highlights: bool = False
    #: (0.2.4) a burst of one person's lines is better shown as one message (a relay's
    #: delivery queue merges lines from networks that cannot edit them: `DeliveryQueues(merge=)`)
    merge: bool = False


class _Component:
    """What plugs and hooks share: a name, a typed config, the host, a logger and a state."""

    Config: ClassVar[type] = NoConfig

    def __init__(self, name: str, config: Any, host: Host) -> None:
        self.name = name
        self.config = config
        self.host = host
        self.state = State.idle
        self.log = logging.getLogger(f"chanmux.{self._kind}.{name}")

    _kind = "component"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.state.value}>"


class Plug(_Component):
    """One connection to one network.

    A plug type implements `open` (connect), optionally `run` (the connection's life: return or
    raise when it ends, and the host reconnects with backoff), `close`, and the message and
    channel methods named as hook specifications (`put`, `edit`, `delete`, `channel_title`, ...).
    The host routes each of those to the plug that owns the channel. Incoming messages go to
    `self.host.receive(sent)`.

    The base class owns the attributes `name`, `config`, `host`, `log`, `state` and
    `capabilities`; a subclass may set `capabilities` per instance when they depend on its
    config. In `close`, `self.state is State.stopping` when the host is shutting down, and
    `State.failed` when the connection failed and will be opened again (keep what must
    survive a reconnect, such as queued messages, on the plug object).
    """

    _kind = "plug"
    #: what the network can carry; a class default, which an instance may replace
    capabilities: Capabilities = Capabilities()
    network_name: ClassVar[str] = "chat"
    #: True for a network that cannot give a message again (IRC keeps no history): the host
    #: keeps each message the plug receives in its inbox until it is done, so a crash does not
    #: lose it (`chanmux.inbox`). A plug that passes `on_handled` to `receive` resumes by
    #: itself and is never journaled.
    journal: bool = False

    def on_load(self) -> None:
        """Checks that need the whole config (other plugs, hooks, `[http]`, files the plug
        reads), once every plug and hook exists and before anything connects: raise
        `ConfigError` naming each problem at its key; `chanmux check` and `chanmux run` show
        them with every other problem of the file. Default: nothing. Since 0.2.3."""

    async def open(self) -> None:
        """Connect to the network; return once the plug can put messages."""

    async def run(self) -> None:
        """Live while connected; return or raise when the connection ends (default: forever)."""
        import anyio

        await anyio.sleep_forever()

    async def close(self) -> None:
        """Disconnect and release everything `open` took. Must be safe to call at any time."""

    async def stopped(self) -> None:
        """Called once when the host stops, after every hook and plug has closed: save what
        the next start needs and that depends on the others' closing, e.g. a resume point
        that waited for deliveries another plug kept for the next start (releasing their
        holds as it closed). Default: nothing."""

    def check_warnings(self) -> list[str]:
        """Problems `chanmux check` should warn about without connecting (e.g. a setting that
        is allowed but unwise). Default: none."""
        return []

    def owns(self, channel: Channel) -> bool:
        return channel.plug == self.name

    def channel(self, source: str) -> Channel:
        """A channel of this plug by its network id."""
        return Channel(self.name, source)

    async def put(self, channel: Channel, msg: Message) -> list[Receipt]:
        raise NotImplementedError(f"plug type {type(self).__name__} cannot send messages")


class Hook(_Component):
    """A feature reacting to messages. Implement hook specifications as plain methods
    (`on_receive`, `before_put`, ...); `priority` orders hooks (lower runs first)."""

    _kind = "hook"
    #: whether `before_receive` and `on_receive` get the network's copies of what the host
    #: put (echoes, `source` the message put). A hook that ignores them sets False (0.2.5):
    #: when no hook wants them the host drops them before any lane work, which is most of
    #: the cost of a relayed message.
    echoes: ClassVar[bool] = True

    def __init__(self, name: str, config: Any, host: Host, priority: int = 100) -> None:
        super().__init__(name, config, host)
        self.priority = priority

    def on_load(self) -> None:
        """One-time set-up once every plug and hook exists; raise ConfigError for bad references."""

    async def open(self) -> None:
        """Start whatever the hook needs while the host runs."""

    async def close(self) -> None:
        """Stop; called before plugs close."""

    def links(self) -> dict[str, list[str]]:
        """What this hook joins, for `chanmux status`: a name (a sync label, a forward
        source) and the channels it links, by their config names (default: nothing).
        Since 0.2.2."""
        return {}


__all__ = ["Capabilities", "Hook", "NoConfig", "Plug", "State", "Channel", "Message",
           "Receipt", "SentMessage", "User"]
