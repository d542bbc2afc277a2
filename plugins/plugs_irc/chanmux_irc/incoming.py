"""Received IRC lines to chanmux messages, keeping track of channels, members and people.

PRIVMSG, NOTICE and CTCP ACTION become text; JOIN, PART, KICK and QUIT (one leave for each
channel shared with the quitter, with its reason) become joins and leaves; NICK becomes a
rename (`renamed`, one for each channel shared with the person); TOPIC becomes a title. A
TAGMSG (or PRIVMSG) with `+draft/react` (`+draft/unreact`) and `+draft/reply` is a reaction
(taken back), one with `+typing` says someone types; REDACT deletes a message. Our own lines
(echo-message or not) are never relayed.

`Incoming` touches nothing but the `NetworkState` it is given: what else a line means for the
plug (we joined a channel, were kicked, a CTCP request to answer, the msgid of our own line,
a text to remember for replies, a puppet renamed) comes back from `handle` as an effect, in
order with the messages, for the plug to act on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal

import attrs

from chanmux import Channel, Reaction, Receipt, RichText, SentMessage, User, unique_id

from .formatting import add_mentions, clean, parse
from .protocol import Line, shorten, split_ctcp
from .state import ChannelState, NetworkState, Person, Said

#: CTCP requests the plug answers itself (never relayed).
CTCP_ANSWERED = {"VERSION", "PING", "TIME", "CLIENTINFO", "SOURCE", "USERINFO", "FINGER"}

log = logging.getLogger(__name__)


@attrs.frozen
class Joined:
    """Our main nick joined `channel` (spelt as the server does)."""

    channel: str


@attrs.frozen
class NamesDone:
    """The server listed the members of `channel`: we are in, and know who else is."""

    channel: str


@attrs.frozen
class Kicked:
    """Our main nick was kicked from `channel` by `by` (the plug decides whether to rejoin)."""

    channel: str
    by: str
    reason: str


@attrs.frozen
class CtcpRequest:
    """`nick` asked us a CTCP `command` the plug answers itself (VERSION, PING, ...)."""

    nick: str
    command: str
    arg: str


@attrs.frozen
class OwnEcho:
    """One of our own lines came back (echo-message): the server's `msgid` for our `label`."""

    msgid: str
    label: str


@attrs.frozen
class Remember:
    """Remember who said message `id` and its text (for replies and edits that quote it)."""

    id: str
    said: Said


@attrs.frozen
class PuppetRenamed:
    """A nick changed from `old` to `new`; if it was one of our puppets, it now has `new`."""

    old: str
    new: str


@attrs.frozen
class Typing:
    """`user` started (`active`) or stopped typing in the channel `source` (`+typing`)."""

    source: str
    user: User
    active: bool


#: What `Incoming.handle` returns: messages for the host and effects for the plug, in order.
Effect = (SentMessage | Joined | NamesDone | Kicked | CtcpRequest | OwnEcho | Remember
          | PuppetRenamed | Typing)
#: Longest reaction key taken (characters): a key is an emoji or a short word.
MAX_KEY = 64
#: Longest leave reason taken (characters).
MAX_REASON = 400
#: The values of `+typing`: active, paused, done.
TYPING = {"active": True, "paused": False, "done": False}


def _same(name: str) -> str:
    return name


def _no_puppet(nick: str) -> User | None:
    return None


def _reason(text: str) -> str | None:
    """A part, quit or kick reason as plain text (formatting dropped), or None for none."""
    reason = " ".join(parse(text).plain.split())
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 1] + "…"
    return reason or None


def _time(line: Line) -> datetime | None:
    stamp = line.tags.get("time")
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


class Incoming:
    """Converts the lines of one plug's main connection; `handle` returns what a line means.

    It reads and updates `state` (channels, members, people) and reads, through callables
    so that it always sees the current value: `nick()` our main nick; `source_for(name)` the
    configured spelling of a channel or nick; `own_id(msgid)` our receipt id for the server
    msgid of one of our lines; `puppet_user(nick)` the remote user a puppet nick stands for
    (None when it is no puppet). `mentions` is the plug's `mentions` setting; `log` where a
    private notice is logged. It calls nothing else of the plug: everything else comes back
    as effects from `handle`."""

    def __init__(self, name: str, state: NetworkState, *, nick: Callable[[], str],
                 source_for: Callable[[str], str] = _same, own_id: Callable[[str], str] = _same,
                 puppet_user: Callable[[str], User | None] = _no_puppet,
                 mentions: Literal["all", "prefix", "off"] = "all",
                 log: logging.Logger = log) -> None:
        self.name = name
        self.state = state
        self.nick = nick
        self.source_for = source_for
        self.own_id = own_id
        self.puppet_user = puppet_user
        self.mentions = mentions
        self.log = log
        self._handlers: dict[str, Callable[[Line], list[Effect]]] = {
            "PRIVMSG": self._message, "NOTICE": self._message, "JOIN": self._join,
            "PART": self._part, "KICK": self._kick, "QUIT": self._quit, "NICK": self._nick,
            "TOPIC": self._topic, "332": self._rpl_topic, "331": self._rpl_notopic,
            "353": self._names, "366": self._end_names, "CHGHOST": self._chghost,
            "ACCOUNT": self._account, "TAGMSG": self._tagmsg, "REDACT": self._redact,
        }

    def handle(self, line: Line) -> list[Effect]:
        """The messages (SentMessage) and effects a line stands for, in the order they happen;
        the state is updated already."""
        handler = self._handlers.get(line.command)
        if handler is None:
            return []
        if line.nick and "account" in line.tags and line.from_user:
            person = self.state.known(line.nick)
            if person is not None:
                person.account = line.tags["account"] or None
        return handler(line)

    def convert(self, line: Line) -> list[SentMessage]:
        """Only the messages of `handle(line)`, the effects left out (benchmarks, tools)."""
        return [e for e in self.handle(line) if isinstance(e, SentMessage)]

    # -- helpers ---------------------------------------------------------------------------------

    def is_main(self, nick: str) -> bool:
        return self.state.fold(nick) == self.state.fold(self.nick())

    def is_own(self, nick: str) -> bool:
        """Our main nick or one of our puppets'."""
        return self.is_main(nick) or self.puppet_user(nick) is not None

    def channel(self, source: str) -> Channel:
        return Channel(self.name, source)

    def _user(self, person: Person) -> User:
        return User(id=person.id, plug=self.name, username=person.nick)

    def _sender(self, line: Line) -> User:
        person = self.state.sender(line.nick or "", line.user, line.host)
        return self._user(person)

    def _sent(self, line: Line, source: str, **fields: object) -> SentMessage:
        msgid = line.tags.get("msgid")
        sent = SentMessage(id=msgid or unique_id(f"{self.name}:"), channel=self.channel(source),
                           raw=line, **fields)  # type: ignore[arg-type]
        at = _time(line)
        if at is not None:
            sent.at = at
        return sent

    def member_user(self, nick: str) -> User | None:
        """The user behind a member's nick: the remote author of a puppet, else the person."""
        puppet = self.puppet_user(nick)
        if puppet is not None:
            return puppet
        person = self.state.people.get(self.state.fold(nick))
        return self._user(person) if person is not None else User(id=nick, plug=self.name, username=nick)

    def _mentions(self, text: RichText, chan: ChannelState | None) -> RichText:
        mode = self.mentions
        if mode == "off" or chan is None or not text or not chan.members:
            return text
        fold = self.state.fold
        me = fold(self.nick())

        def lookup(word: str) -> User | None:
            folded = fold(word)
            nick = chan.members.get(folded) if folded != me else None
            return self.member_user(nick) if nick else None

        return add_mentions(text, lookup, prefix_only=mode == "prefix")

    # -- messages --------------------------------------------------------------------------------

    def _own_echo(self, line: Line) -> list[Effect] | None:
        """What a line said by us (or for us: RELAYMSG, a puppet) means: the msgid of our
        labelled line, or nothing; None when it is someone else's."""
        relayed = line.tags.get("draft/relaymsg") or line.tags.get("relaymsg")
        if not (self.is_own(line.nick or "") or (relayed and self.is_own(relayed))):
            return None
        label, msgid = line.tags.get("label"), line.tags.get("msgid")
        return [OwnEcho(msgid, label)] if label and msgid else []

    def _target(self, line: Line) -> str:
        """The channel or nick a line is sent to, without a STATUSMSG prefix (`@#chan`)."""
        target = line.params[0]
        info = self.state.info
        while len(target) > 1 and target[0] in info.statusmsg and target[1] in info.chantypes:
            target = target[1:]
        return target

    def _reaction(self, line: Line, source: str) -> SentMessage | None:
        """The reaction a line's `+draft/react` or `+draft/unreact` with `+draft/reply` is,
        if it is one (the key cleaned of control characters and cut to MAX_KEY)."""
        parent = line.tags.get("+draft/reply")
        react, unreact = line.tags.get("+draft/react"), line.tags.get("+draft/unreact")
        key = " ".join(clean(" ".join((react or unreact or "").split())).split())[:MAX_KEY]
        if not parent or not key:
            return None
        channel = self.channel(source)
        reaction = Reaction(key, Receipt(id=self.own_id(parent), channel=channel),
                            removed=not react)
        return self._sent(line, source, user=self._sender(line), reaction=reaction)

    def _tagmsg(self, line: Line) -> list[Effect]:
        if not line.params or not line.from_user:
            return []
        own = self._own_echo(line)
        if own is not None:
            return own
        target = self._target(line)
        is_channel = self.state.info.is_channel(target)
        if is_channel and self.state.channel(target) is None:
            return []
        source = self.source_for(target if is_channel else line.nick or "")
        out: list[Effect] = []
        reaction = self._reaction(line, source)
        if reaction is not None:
            if not is_channel:
                self.state.private[self.state.fold(line.nick or "")] = source
            out.append(reaction)
        typing = TYPING.get(line.tags.get("+typing", ""))
        if typing is not None:
            out.append(Typing(source, self._sender(line), typing))
        return out

    def _redact(self, line: Line) -> list[Effect]:
        if len(line.params) < 2 or not line.from_user or self.is_own(line.nick or ""):
            return []
        target, msgid = self._target(line), line.params[1]
        is_channel = self.state.info.is_channel(target)
        if not msgid or (is_channel and self.state.channel(target) is None):
            return []
        source = self.source_for(target if is_channel else line.nick or "")
        return [SentMessage(id=self.own_id(msgid), channel=self.channel(source), deleted=True,
                            raw=line)]

    def _message(self, line: Line) -> list[Effect]:
        if len(line.params) < 2 or not line.from_user:
            return []
        nick = line.nick or ""
        own = self._own_echo(line)
        if own is not None:
            return own
        target, text = self._target(line), line.params[-1]
        info = self.state.info
        notice = line.command == "NOTICE"
        action = False
        request = split_ctcp(text)
        if request is not None:
            command, arg = request
            if command != "ACTION" or notice:
                if not notice and command in CTCP_ANSWERED:
                    return [CtcpRequest(nick, command, arg)]
                return []
            action, text = True, arg
        is_channel = info.is_channel(target)
        if not is_channel and notice:
            self.log.info("notice from %s: %s", shorten(nick, 60), shorten(text))
            return []
        if is_channel:
            source = self.source_for(target)
            chan = self.state.channel(target)
        else:
            source = self.source_for(nick)
            self.state.private[self.state.fold(nick)] = source
            chan = None
        reaction = self._reaction(line, source) if not notice else None
        if reaction is not None:  # its text, if any, only says it for clients without tags
            return [reaction]
        rich = self._mentions(parse(text), chan)
        if not rich and not action:
            return []
        user = self._sender(line)
        fields: dict[str, object] = {"text": rich, "user": user, "action": action, "notice": notice}
        parent = line.tags.get("+draft/reply") or line.tags.get("+reply")
        if parent:
            fields["reply_to"] = Receipt(id=self.own_id(parent), channel=self.channel(source))
        sent = self._sent(line, source, **fields)
        return [Remember(sent.id, Said(user.username, rich)), sent]

    # -- membership ------------------------------------------------------------------------------

    def _join(self, line: Line) -> list[Effect]:
        name = line.param(0)
        if not name or not line.nick:
            return []
        folded = self.state.fold(name)
        if self.is_main(line.nick):
            self.state.drop_channel(folded)
            self.state.channels[folded] = ChannelState(name)
            return [Joined(name)]
        chan = self.state.channels.get(folded)
        if chan is None:
            return []
        chan.add(self.state.fold(line.nick), line.nick)
        person = self.state.seen(line.nick, line.user, line.host)
        if len(line.params) >= 3:  # extended-join: account and real name
            person.account = None if line.params[1] == "*" else line.params[1]
            person.realname = line.params[2]
        if self.is_own(line.nick):
            return []
        user = self._user(person)
        return [self._sent(line, self.source_for(name), joined=[user], user=user)]

    def _part(self, line: Line) -> list[Effect]:
        name = line.param(0)
        if not name or not line.nick:
            return []
        folded = self.state.fold(name)
        if self.is_main(line.nick):
            self.state.drop_channel(folded)
            return []
        chan = self.state.channels.get(folded)
        if chan is None or not chan.remove(self.state.fold(line.nick)):
            return []
        user = self._sender(line)
        self.state.forget_if_alone(line.nick)
        if self.is_own(line.nick):
            return []
        return [self._sent(line, self.source_for(name), left=[user], user=user,
                           reason=_reason(line.param(1) if len(line.params) > 1 else ""))]

    def _kick(self, line: Line) -> list[Effect]:
        name, victim = line.param(0), line.param(1)
        if not name or not victim:
            return []
        folded = self.state.fold(name)
        if self.is_main(victim):
            self.state.drop_channel(folded)
            return [Kicked(name, line.nick or "", line.param(2) if len(line.params) > 2 else "")]
        chan = self.state.channels.get(folded)
        if chan is None:
            return []
        target = self.member_user(victim)
        chan.remove(self.state.fold(victim))
        self.state.forget_if_alone(victim)
        if self.is_own(victim) or target is None:
            return []
        kicker = self._sender(line) if line.from_user else None
        return [self._sent(line, self.source_for(name), left=[target], user=kicker,
                           reason=_reason(line.param(2) if len(line.params) > 2 else ""))]

    def _quit(self, line: Line) -> list[Effect]:
        nick = line.nick
        if not nick or self.is_own(nick):
            return []
        user = self._sender(line)
        reason = _reason(line.param(0))
        out = []
        for chan in list(self.state.shared(nick)):
            chan.remove(self.state.fold(nick))
            out.append(self._sent(line, self.source_for(chan.name), left=[user], user=user,
                                  reason=reason))
        self.state.people.pop(self.state.fold(nick), None)
        for msg in out[1:]:
            msg.id = unique_id(f"{self.name}:")
        return list(out)

    def _nick(self, line: Line) -> list[Effect]:
        old, new = line.nick, line.param(0)
        if not old or not new:
            return []
        fold = self.state.fold
        person = self.state.people.pop(fold(old), None) or Person(old, line.user, line.host)
        before = self._user(person)
        renamed = Person(new, person.user, person.host, person.account, person.realname)
        shared = list(self.state.shared(old))
        if shared:  # else a stranger: nothing to remember
            self.state.people[fold(new)] = renamed
        for chan in shared:
            chan.remove(fold(old))
            chan.add(fold(new), new)
        if self.puppet_user(old) is not None:
            return [PuppetRenamed(old, new)]
        if self.is_own(old) or self.is_own(new):
            return []
        after = self._user(renamed)
        out = [self._sent(line, self.source_for(chan.name), user=after, renamed=(before, after))
               for chan in shared]
        for msg in out[1:]:
            msg.id = unique_id(f"{self.name}:")
        return list(out)

    def _topic(self, line: Line) -> list[Effect]:
        name = line.param(0)
        chan = self.state.channel(name) if name else None
        if chan is None or len(line.params) < 2:
            return []
        chan.topic = line.params[-1] or None
        if not line.nick or self.is_own(line.nick):
            return []
        user = self._sender(line) if line.from_user else None
        return [self._sent(line, self.source_for(name), title=line.params[-1], user=user)]

    def _rpl_topic(self, line: Line) -> list[Effect]:
        chan = self.state.channel(line.param(1)) if len(line.params) >= 3 else None
        if chan is not None:
            chan.topic = line.params[-1] or None
        return []

    def _rpl_notopic(self, line: Line) -> list[Effect]:
        chan = self.state.channel(line.param(1)) if len(line.params) >= 2 else None
        if chan is not None:
            chan.topic = None
        return []

    def _names(self, line: Line) -> list[Effect]:
        if len(line.params) < 4:
            return []
        chan = self.state.channel(line.params[2])
        if chan is None:
            return []
        if chan.names_pending is None:
            chan.names_pending = {}
        prefixes = self.state.info.prefix_chars
        for entry in line.params[-1].split():
            entry = entry.lstrip(prefixes)
            nick, _, mask = entry.partition("!")
            if not nick:
                continue
            user, _, host = mask.partition("@")
            self.state.seen(nick, user or None, host or None)
            chan.names_pending[self.state.fold(nick)] = nick
        return []

    def _end_names(self, line: Line) -> list[Effect]:
        chan = self.state.channel(line.param(1)) if len(line.params) >= 2 else None
        if chan is not None:
            if chan.names_pending is not None:
                gone = chan.members.keys() - chan.names_pending.keys()
                chan.members = chan.names_pending
                chan.names_pending = None
                chan.version += 1
                self.state.forget_all_alone(gone)
            return [NamesDone(chan.name)]
        return []

    def _chghost(self, line: Line) -> list[Effect]:
        person = self.state.known(line.nick) if line.nick else None
        if person is not None and len(line.params) >= 2:
            person.user, person.host = line.params[0], line.params[1]
        return []

    def _account(self, line: Line) -> list[Effect]:
        person = self.state.known(line.nick) if line.nick else None
        if person is not None and line.params:
            person.account = None if line.params[0] == "*" else line.params[0]
        return []


__all__ = ["CtcpRequest", "Effect", "Incoming", "Joined", "Kicked", "NamesDone", "OwnEcho",
           "PuppetRenamed", "Remember", "Typing"]
