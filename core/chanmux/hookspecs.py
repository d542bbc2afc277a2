"""Hook specifications of the chanmux host (pluggy project "chanmux").

Two kinds of plugin objects implement them:

* **Distributions** (modules found through the entry-point group ``chanmux.plugins``) implement
  the synchronous *registration* specs, marked with ``@chanmux.hookimpl``.
* **Instances** (each configured plug and hook) implement the asynchronous *message* and
  *look-up* specs as plain methods of the same name; the host registers them under their
  config names.

How the host calls each async spec (its ``call`` attribute):

``fanout``   every implementation, each isolated (a failure or a hang is logged with its
             plugin's name and cannot stop the others). ``on_receive`` runs them in priority
             order within the message's lane; notifications run them concurrently.
``chain``    implementations in priority order; each gets the previous one's result; returning
             ``None`` drops the message.
``owner``    only the plug that owns the channel (or the named plug) answers.

pluggy itself is synchronous: the host never awaits what ``pm.hook.x()`` returns; it walks the
implementations and awaits each (see :mod:`chanmux.caller`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

if TYPE_CHECKING:
    from sqlalchemy import MetaData

    from .model import Channel, Message, Receipt, SentMessage, User
    from .plug import Hook, Plug

hookspec = pluggy.HookspecMarker("chanmux")
hookimpl = pluggy.HookimplMarker("chanmux")

F = TypeVar("F", bound=Callable[..., Any])


def _spec(call: str, since: str = "0.1", route: str | None = None, **opts: Any) -> Callable[[F], F]:
    def mark(fn: F) -> F:
        fn.chanmux_call = call  # type: ignore[attr-defined]
        fn.chanmux_since = since  # type: ignore[attr-defined]
        fn.chanmux_route = route  # type: ignore[attr-defined]
        marked: F = hookspec(**opts)(fn)
        return marked

    return mark


# -- registration (synchronous, implemented by distributions) --------------------------------


@_spec("register")
def chanmux_plug_types() -> dict[str, type[Plug]]:
    """Plug types this distribution provides, by the name used as ``type`` in the config.

    Returns: ``{"irc": IRCPlug}``. Sync; every distribution may answer; a type name given by two
    distributions is a load error naming both. Since 0.1.
    """


@_spec("register")
def chanmux_hook_types() -> dict[str, type[Hook]]:
    """Hook types this distribution provides, by config ``type`` name.

    Returns: ``{"sync": SyncHook}``. Sync; every distribution may answer. Since 0.1.
    """


@_spec("register")
def chanmux_metadata() -> MetaData | None:
    """The SQLAlchemy ``MetaData`` holding this distribution's tables, or None.

    With ``MetaData(info={"migrations": "mypackage.migrations"})`` (a package name or a folder
    of Alembic revision scripts, the first with ``branch_labels = ("<distribution name>",)``;
    since 0.2.0), the host upgrades the tables through them at start, keeps their revision in
    the table ``chanmux_schema_<name>``, and refuses, in one line, a database at a revision the
    installed package does not know. Without it the host creates the missing tables (existing
    ones are left alone) and versions nothing. Sync; every distribution may answer. Since 0.1.
    """


# -- message path (async, implemented by plug and hook instances) ----------------------------


@_spec("chain")
async def before_receive(sent: SentMessage, source: Message, primary: bool) -> SentMessage | None:
    """Inspect or change a received message before any ``on_receive`` sees it.

    Parameters: ``sent``, the message as received; ``source``, the message it is a copy of when
    a hook put it through the host (else ``sent``); ``primary``, False for extra raw messages
    that represent one message. Returns: the message to pass on (``sent`` or a changed copy), or
    None to drop it. Called in hook priority order. Async, chain. Since 0.1.
    """


@_spec("fanout")
async def on_receive(sent: SentMessage, source: Message, primary: bool) -> None:
    """React to a message received by any plug (the main entry point of features like sync).

    Parameters as ``before_receive``; ``source is not sent`` when the host knows the message is
    the network's copy of something put through it. Returns nothing. Every hook is called, in
    priority order; a hook that raises is logged and one that runs longer than the host's
    ``hook_timeout`` is cancelled, and the others still run. Messages of one channel are
    handled in order, different channels concurrently. Async, fan-out. Since 0.1.
    """


@_spec("chain")
async def before_put(channel: Channel, msg: Message) -> Message | None:
    """Inspect or change a message about to be put in ``channel``.

    Returns: the message to send (``msg`` or a changed copy), or None to send nothing. Called in
    hook priority order. Async, chain. Since 0.1.
    """


@_spec("owner", route="channel")
async def put(channel: Channel, msg: Message) -> list[Receipt]:
    """Send ``msg`` to ``channel`` on the network; the plug owning the channel answers.

    A plug may send more than one physical message to represent one (text and a file, a long
    text split). Returns: a Receipt for each, in order. Async, owner. Since 0.1.
    """


@_spec("owner", route="sent")
async def edit(sent: Receipt, msg: Message) -> list[Receipt]:
    """Replace the message at ``sent`` with ``msg`` in place; the plug owning it answers.

    Only plugs whose capabilities say ``edit`` implement it; for others the host puts the edit
    as a new message with ``msg.edited`` set and ``msg.edit_of`` naming the earlier copy, for the
    plug to render by its own policy. Returns: Receipts of the edited copy. Async, owner. Since 0.1.
    """


@_spec("owner", route="sent")
async def delete(sent: Receipt) -> bool:
    """Remove the message at ``sent`` from its channel, where the network allows it.

    Returns: True when the network removed it. Async, owner. Since 0.1.
    """


# -- channel look-ups (async, answered by the owning plug) -----------------------------------


@_spec("owner", route="plug")
async def public_channels() -> list[Channel] | None:
    """Every shared channel the plug can see, or None if the network has no discovery.

    Called for one named plug. Async, owner. Since 0.1.
    """


@_spec("owner", route="plug")
async def private_channels() -> list[Channel] | None:
    """Every private (one-to-one) channel the plug knows, or None without discovery.

    Called for one named plug. Async, owner. Since 0.1.
    """


@_spec("owner", route="channel")
async def channel_is_private(channel: Channel) -> bool | None:
    """True if ``channel`` is a one-to-one conversation; None if the network cannot tell.

    Async, owner. Since 0.1.
    """


@_spec("owner", route="channel")
async def channel_title(channel: Channel) -> str | None:
    """The channel's friendly name on its network (topic or room name), or None.

    Async, owner. Since 0.1.
    """


@_spec("owner", route="channel")
async def channel_members(channel: Channel) -> list[User] | None:
    """Users present in ``channel``, or None if the plug cannot tell.

    Async, owner. Since 0.1.
    """


@_spec("owner", route="channel")
async def channel_link(channel: Channel) -> str | None:
    """A URL a person can open to reach ``channel``, or None. Async, owner. Since 0.1."""


# -- typing (ephemeral: not messages, never kept) --------------------------------------------


@_spec("fanout", since="0.2.4")
async def on_typing(channel: Channel, user: User, active: bool) -> None:
    """`user` started (``active``) or stopped typing in `channel`, as a plug reported it with
    `Host.typing_received`. Not a message: no lane, no id, nothing kept; a relay passes it on
    with `Host.typing` (throttled: networks that say "typing" every few seconds would
    otherwise flood the others). Async, fan-out (concurrently). Since 0.2.4.
    """


@_spec("owner", since="0.2.4")
async def typing(channel: Channel, user: User, active: bool) -> None:
    """Show on the network that `user` (a person of another network, as a relay names them)
    is typing in `channel` (``active``), or no longer. Answered by the plug owning the
    channel, if it implements it (a network without typing notifications does not);
    best-effort, nothing is retried. Async, owner. Since 0.2.4.
    """


# -- lifecycle notifications -----------------------------------------------------------------


@_spec("fanout")
async def on_plug_state(plug: Plug, state: str, reason: str | None) -> None:
    """A plug changed state (``"active"`` once connected, ``"failed"`` when its connection ended
    and the host will reconnect it, ``"stopped"``); ``reason`` says why when known.

    Lets hooks adapt (say, announce an outage). Async, fan-out. Since 0.1.
    """


@_spec("fanout", since="0.2.2")
async def http_routes() -> list[Any]:
    """Routes this plug or hook serves on the host's HTTP listener (``[http] listen``):
    a list of :class:`chanmux.Route` (method, path with ``{name}`` segments, an async handler
    taking a :class:`chanmux.Request` and returning a :class:`chanmux.Response`, and
    optionally a ``secret`` the request must bear as ``Authorization: Bearer``).

    Asked once, when the listener starts (after hooks are open, before plugs connect); a path
    the host or another plugin serves already is refused with an error naming both. Not asked
    when no listener is configured. Async, fan-out. Since 0.2.2.
    """


# -- the command line (synchronous, implemented by distributions) ----------------------------


@_spec("register", since="0.2.0")
def chanmux_starter(channels: list[str]) -> str | None:
    """This distribution's section of the starter config ``chanmux init`` writes, or None.

    Returns: TOML text with comments saying what to change, e.g. a ``[plugs.NAME]`` table and
    the ``[channels.NAME]`` it joins. ``channels``: empty when called for a distribution that
    provides plug types (these are called first); for the others, the names of every channel
    those sections define, so that a relay hook can link them. The sections are written in that
    order, and the file must pass ``chanmux check`` once its ``${VARIABLES}`` are set. Sync;
    every distribution may answer. Since 0.2.0.
    """


@_spec("register", since="0.2.0")
def chanmux_examples() -> dict[str, Any] | None:
    """Example configs this distribution ships, by name, for ``chanmux init --example NAME``.

    Returns: ``{"irc-matrix": importlib.resources.files(__package__) / "examples/irc-matrix.toml"}``
    (any object with ``read_text()``: a ``Path`` or a package resource); the file's first comment
    line describes it in ``chanmux init --example``. Each must pass ``chanmux check`` with the
    plugins it names installed. A name given by two distributions is reported. Sync; every
    distribution may answer. Since 0.2.0.
    """


@_spec("register", since="0.2.2")
def chanmux_commands() -> list[Any] | None:
    """Subcommands this distribution adds to ``chanmux``: a list of :class:`chanmux.Command`
    (name, one-line help, ``run(args) -> exit status``, optional ``arguments(parser)``).

    ``chanmux NAME ...`` runs one; ``chanmux --help`` lists them. A name core's own commands
    use, or that another distribution gave first, is refused with a warning naming both.
    Sync; every distribution may answer. Since 0.2.2.
    """


REGISTRATION_SPECS = ("chanmux_plug_types", "chanmux_hook_types", "chanmux_metadata",
                      "chanmux_starter", "chanmux_examples", "chanmux_commands")


def spec_functions() -> dict[str, Callable[..., Any]]:
    """Every hook specification of the host, by name."""
    import inspect
    import sys

    module = sys.modules[__name__]
    return {
        name: fn
        for name, fn in inspect.getmembers(module, inspect.isfunction)
        if hasattr(fn, "chanmux_call")
    }
