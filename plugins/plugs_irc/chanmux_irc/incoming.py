"""Received IRC lines to chanmux messages, keeping track of channels, members and people.

PRIVMSG, NOTICE and CTCP ACTION become text; JOIN, PART, KICK and QUIT (one leave for each
channel shared with the quitter) become joins and leaves; NICK becomes a rename (`renamed`,
one for each channel shared with the person); TOPIC becomes a title. Our own lines
(echo-message or not) are never relayed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from chanmux import Receipt, RichText, SentMessage, User, unique_id

from .formatting import add_mentions, parse
from .protocol import Line, shorten, split_ctcp
from .state import ChannelState, NetworkState, Person, Said

if TYPE_CHECKING:
    from .plug import IRCPlug

#: CTCP requests the plug answers itself (never relayed).
CTCP_ANSWERED = {"VERSION", "PING", "TIME", "CLIENTINFO", "SOURCE", "USERINFO", "FINGER"}


def _time(line: Line) -> datetime | None:
    stamp = line.tags.get("time")
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


class Incoming:
    """Converts lines for one plug; `convert` returns the messages a line stands for."""

    def __init__(self, plug: IRCPlug) -> None:
        self.plug = plug
        self.name = plug.name
        self._handlers: dict[str, Callable[[Line], list[SentMessage]]] = {
            "PRIVMSG": self._message, "NOTICE": self._message, "JOIN": self._join,
            "PART": self._part, "KICK": self._kick, "QUIT": self._quit, "NICK": self._nick,
            "TOPIC": self._topic, "332": self._rpl_topic, "331": self._rpl_notopic,
            "353": self._names, "366": self._end_names, "CHGHOST": self._chghost,
            "ACCOUNT": self._account,
        }

    @property
    def state(self) -> NetworkState:
        return self.plug.network

    def convert(self, line: Line) -> list[SentMessage]:
        handler = self._handlers.get(line.command)
        if handler is None:
            return []
        if line.nick and "account" in line.tags and line.from_user:
            person = self.state.known(line.nick)
            if person is not None:
                person.account = line.tags["account"] or None
        return handler(line)

    # -- helpers ---------------------------------------------------------------------------------

    def _user(self, person: Person) -> User:
        return User(id=person.id, plug=self.name, username=person.nick)

    def _sender(self, line: Line) -> User:
        person = self.state.sender(line.nick or "", line.user, line.host)
        return self._user(person)

    def _sent(self, line: Line, source: str, **fields: object) -> SentMessage:
        msgid = line.tags.get("msgid")
        sent = SentMessage(id=msgid or unique_id(f"{self.name}:"), channel=self.plug.channel(source),
                           raw=line, **fields)  # type: ignore[arg-type]
        at = _time(line)
        if at is not None:
            sent.at = at
        return sent

    def member_user(self, nick: str) -> User | None:
        puppet = self.plug.puppet_user(nick)
        if puppet is not None:
            return puppet
        person = self.state.people.get(self.state.fold(nick))
        return self._user(person) if person is not None else User(id=nick, plug=self.name, username=nick)

    def _mentions(self, text: RichText, chan: ChannelState | None) -> RichText:
        mode = self.plug.config.mentions
        if mode == "off" or chan is None or not text or not chan.members:
            return text
        fold = self.state.fold
        me = fold(self.plug.nick)

        def lookup(word: str) -> User | None:
            folded = fold(word)
            nick = chan.members.get(folded) if folded != me else None
            return self.member_user(nick) if nick else None

        return add_mentions(text, lookup, prefix_only=mode == "prefix")

    # -- messages --------------------------------------------------------------------------------

    def _message(self, line: Line) -> list[SentMessage]:
        if len(line.params) < 2 or not line.from_user:
            return []
        nick = line.nick or ""
        relayed = line.tags.get("draft/relaymsg")
        if self.plug.is_own(nick) or (relayed and self.plug.is_own(relayed)):
            self.plug.own_echo(line)
            return []
        target, text = line.params[0], line.params[-1]
        info = self.state.info
        while len(target) > 1 and target[0] in info.statusmsg and target[1] in info.chantypes:
            target = target[1:]
        notice = line.command == "NOTICE"
        action = False
        request = split_ctcp(text)
        if request is not None:
            command, arg = request
            if command != "ACTION" or notice:
                if not notice and command in CTCP_ANSWERED:
                    self.plug.answer_ctcp(nick, command, arg)
                return []
            action, text = True, arg
        is_channel = info.is_channel(target)
        if not is_channel and notice:
            self.plug.log.info("notice from %s: %s", shorten(nick, 60), shorten(text))
            return []
        if is_channel:
            source = self.plug.source_for(target)
            chan = self.state.channel(target)
        else:
            source = self.plug.source_for(nick)
            self.state.private[self.state.fold(nick)] = source
            chan = None
        rich = self._mentions(parse(text), chan)
        if not rich and not action:
            return []
        user = self._sender(line)
        fields: dict[str, object] = {"text": rich, "user": user, "action": action, "notice": notice}
        parent = line.tags.get("+draft/reply") or line.tags.get("+reply")
        if parent:
            fields["reply_to"] = Receipt(id=self.plug.own_id(parent), channel=self.plug.channel(source))
        sent = self._sent(line, source, **fields)
        self.plug.said[sent.id] = Said(user.username, rich)
        return [sent]

    # -- membership ------------------------------------------------------------------------------

    def _join(self, line: Line) -> list[SentMessage]:
        name = line.param(0)
        if not name or not line.nick:
            return []
        folded = self.state.fold(name)
        if self.plug.is_main(line.nick):
            self.state.drop_channel(folded)
            self.state.channels[folded] = ChannelState(name)
            self.plug.joined(name)
            return []
        chan = self.state.channels.get(folded)
        if chan is None:
            return []
        chan.add(self.state.fold(line.nick), line.nick)
        person = self.state.seen(line.nick, line.user, line.host)
        if len(line.params) >= 3:  # extended-join: account and real name
            person.account = None if line.params[1] == "*" else line.params[1]
            person.realname = line.params[2]
        if self.plug.is_own(line.nick):
            return []
        user = self._user(person)
        return [self._sent(line, self.plug.source_for(name), joined=[user], user=user)]

    def _part(self, line: Line) -> list[SentMessage]:
        name = line.param(0)
        if not name or not line.nick:
            return []
        folded = self.state.fold(name)
        if self.plug.is_main(line.nick):
            self.state.drop_channel(folded)
            return []
        chan = self.state.channels.get(folded)
        if chan is None or not chan.remove(self.state.fold(line.nick)):
            return []
        user = self._sender(line)
        self.state.forget_if_alone(line.nick)
        if self.plug.is_own(line.nick):
            return []
        return [self._sent(line, self.plug.source_for(name), left=[user], user=user)]

    def _kick(self, line: Line) -> list[SentMessage]:
        name, victim = line.param(0), line.param(1)
        if not name or not victim:
            return []
        folded = self.state.fold(name)
        if self.plug.is_main(victim):
            self.state.drop_channel(folded)
            self.plug.kicked(name, line.nick or "", line.param(2) if len(line.params) > 2 else "")
            return []
        chan = self.state.channels.get(folded)
        if chan is None:
            return []
        target = self.member_user(victim)
        chan.remove(self.state.fold(victim))
        self.state.forget_if_alone(victim)
        if self.plug.is_own(victim) or target is None:
            return []
        kicker = self._sender(line) if line.from_user else None
        return [self._sent(line, self.plug.source_for(name), left=[target], user=kicker)]

    def _quit(self, line: Line) -> list[SentMessage]:
        nick = line.nick
        if not nick or self.plug.is_own(nick):
            return []
        user = self._sender(line)
        out = []
        for chan in list(self.state.shared(nick)):
            chan.remove(self.state.fold(nick))
            out.append(self._sent(line, self.plug.source_for(chan.name), left=[user], user=user))
        self.state.people.pop(self.state.fold(nick), None)
        for msg in out[1:]:
            msg.id = unique_id(f"{self.name}:")
        return out

    def _nick(self, line: Line) -> list[SentMessage]:
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
        if self.plug.puppets is not None:
            self.plug.puppets.renamed(old, new)
        if self.plug.is_own(old) or self.plug.is_own(new):
            return []
        after = self._user(renamed)
        out = [self._sent(line, self.plug.source_for(chan.name), user=after, renamed=(before, after))
               for chan in shared]
        for msg in out[1:]:
            msg.id = unique_id(f"{self.name}:")
        return out

    def _topic(self, line: Line) -> list[SentMessage]:
        name = line.param(0)
        chan = self.state.channel(name) if name else None
        if chan is None or len(line.params) < 2:
            return []
        chan.topic = line.params[-1] or None
        if not line.nick or self.plug.is_own(line.nick):
            return []
        user = self._sender(line) if line.from_user else None
        return [self._sent(line, self.plug.source_for(name), title=line.params[-1], user=user)]

    def _rpl_topic(self, line: Line) -> list[SentMessage]:
        chan = self.state.channel(line.param(1)) if len(line.params) >= 3 else None
        if chan is not None:
            chan.topic = line.params[-1] or None
        return []

    def _rpl_notopic(self, line: Line) -> list[SentMessage]:
        chan = self.state.channel(line.param(1)) if len(line.params) >= 2 else None
        if chan is not None:
            chan.topic = None
        return []

    def _names(self, line: Line) -> list[SentMessage]:
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

    def _end_names(self, line: Line) -> list[SentMessage]:
        chan = self.state.channel(line.param(1)) if len(line.params) >= 2 else None
        if chan is not None:
            if chan.names_pending is not None:
                gone = chan.members.keys() - chan.names_pending.keys()
                chan.members = chan.names_pending
                chan.names_pending = None
                chan.version += 1
                self.state.forget_all_alone(gone)
            self.plug.names_done(chan.name)
        return []

    def _chghost(self, line: Line) -> list[SentMessage]:
        person = self.state.known(line.nick) if line.nick else None
        if person is not None and len(line.params) >= 2:
            person.user, person.host = line.params[0], line.params[1]
        return []

    def _account(self, line: Line) -> list[SentMessage]:
        person = self.state.known(line.nick) if line.nick else None
        if person is not None and line.params:
            person.account = None if line.params[0] == "*" else line.params[0]
        return []


__all__ = ["Incoming"]
