"""`Incoming` on its own, without a host or a plug: each received line gives the messages and
effects expected, and the state it keeps (channels, members, people) follows the line.

The real-server tests (test_irc_receive.py and others) show the same behaviour end to end."""

from __future__ import annotations

import logging

import pytest

from chanmux import Channel, Reaction, Receipt, SentMessage, User
from chanmux_irc.incoming import (
    CtcpRequest,
    Incoming,
    Joined,
    Kicked,
    NamesDone,
    OwnEcho,
    PuppetRenamed,
    Remember,
    Typing,
)
from chanmux_irc.protocol import parse
from chanmux_irc.state import NetworkState, Said

ALICE = User(id="@alice:mx", plug="mx", username="@alice:mx", real_name="Alice")


class Network:
    """What a plug would hand Incoming: our nick, configured spellings, puppets, own ids."""

    def __init__(self, nick: str = "me") -> None:
        self.nick = nick
        self.state = NetworkState()
        self.state.info.update(["CHANTYPES=#&", "PREFIX=(ov)@+", "STATUSMSG=@+"])
        fold = self.state.fold                    # rfc1459: Alice[b] is alice{b}
        self.sources = {fold("#chan"): "#Chan"}    # as configured
        self.puppets = {fold("Alice[b]"): ALICE}   # a puppet nick -> its remote user
        self.own_ids = {"srv-1": "irc:receipt-1"}
        self.incoming = Incoming(
            "irc", self.state, nick=lambda: self.nick,
            source_for=lambda name: self.sources.get(self.state.fold(name), name),
            own_id=lambda msgid: self.own_ids.get(msgid, msgid),
            puppet_user=lambda nick: self.puppets.get(self.state.fold(nick)))

    def handle(self, raw: str) -> list[object]:
        line = parse(raw)
        assert line is not None, raw
        return self.incoming.handle(line)

    def join(self, channel: str, *members: str) -> None:
        """We joined `channel` and the server listed its members."""
        self.handle(f":{self.nick}!u@h JOIN {channel}")
        self.handle(f":srv 353 {self.nick} = {channel} :@{self.nick} {' '.join(members)}")
        self.handle(f":srv 366 {self.nick} {channel} :End of NAMES")


def only(effects: list[object]) -> SentMessage:
    (sent,) = [e for e in effects if isinstance(e, SentMessage)]
    return sent


def test_our_join_is_an_effect_and_the_names_that_follow_are_the_members():
    net = Network()
    assert net.handle(":me!u@h JOIN #CHAN") == [Joined("#CHAN")]
    assert net.state.channel("#chan") is not None
    assert net.handle(":srv 353 me = #CHAN :@me +bob carol!c@home") == []
    assert net.handle(":srv 366 me #CHAN :End of NAMES") == [NamesDone("#CHAN")]
    assert sorted(net.state.channel("#chan").members.values()) == ["bob", "carol", "me"]
    assert net.state.known("carol").host == "home"


def test_someone_joining_is_a_join_in_the_configured_channel():
    net = Network()
    net.join("#chan")
    sent = only(net.handle("@msgid=j1 :dave!d@host JOIN #chan acct :Dave Real"))
    assert sent.channel == Channel("irc", "#Chan")       # as configured, not as the server spells it
    assert sent.id == "j1"
    (user,) = sent.joined
    assert user == sent.user and user.username == "dave" and user.id == "acct"
    assert net.state.known("dave").realname == "Dave Real"
    assert net.handle(":eve!e@host JOIN #elsewhere") == []      # a channel we are not in


def test_a_part_is_a_leave_and_our_own_part_forgets_the_channel():
    net = Network()
    net.join("#chan", "bob")
    sent = only(net.handle(":bob!b@host PART #chan :bye"))
    assert sent.left[0].username == "bob" and sent.channel.source == "#Chan"
    assert net.state.known("bob") is None                   # shares no channel with us now
    assert net.handle(":bob!b@host PART #chan") == []       # not a member any more
    assert net.handle(":me!u@h PART #chan") == []
    assert net.state.channel("#chan") is None


def test_a_kick_of_us_is_an_effect_and_a_kick_of_someone_a_leave_by_the_kicker():
    net = Network()
    net.join("#chan", "bob", "op")
    sent = only(net.handle(":op!o@host KICK #chan bob :spam"))
    assert [u.username for u in sent.left] == ["bob"] and sent.user.username == "op"
    assert net.handle(":op!o@host KICK #chan me :go away") == [Kicked("#chan", "op", "go away")]
    assert net.state.channel("#chan") is None


def test_a_nick_change_is_a_rename_in_each_shared_channel():
    net = Network()
    net.join("#chan", "bob")
    net.join("#other", "bob")
    effects = net.handle(":bob!b@host NICK :robert")
    assert len(effects) == 2 and all(isinstance(e, SentMessage) for e in effects)
    assert {e.channel.source for e in effects} == {"#Chan", "#other"}
    assert len({e.id for e in effects}) == 2
    before, after = effects[0].renamed
    assert (before.username, after.username) == ("bob", "robert")
    assert "robert" in net.state.channel("#chan").members.values()
    assert net.handle(":stranger!s@host NICK :other") == []      # shares no channel with us


def test_a_puppet_changing_nick_is_an_effect_not_a_rename():
    net = Network()
    net.join("#chan", "Alice[b]")
    assert net.handle(":Alice[b]!p@host NICK :Alice_[b]") == [PuppetRenamed("Alice[b]", "Alice_[b]")]
    net.nick = "me2"
    assert net.handle(":me!u@h NICK :me2") == []                # our own nick: nothing relayed


def test_a_channel_message_is_remembered_and_relayed_with_its_mentions_and_reply():
    net = Network()
    net.join("#chan", "bob", "Alice[b]")
    effects = net.handle("@msgid=m1;+draft/reply=srv-1 :bob!b@host PRIVMSG @#chan :alice{b}: hi")
    remember, sent = effects
    assert sent.id == "m1" and sent.channel == Channel("irc", "#Chan")
    assert sent.text.plain == "alice{b}: hi" and sent.user.username == "bob"
    (mention,) = [s for s in sent.text if s.mention]
    assert mention.mention == ALICE                    # a puppet's highlight is its author's
    assert isinstance(sent.reply_to, Receipt)          # to our line, by our receipt id
    assert (sent.reply_to.id, sent.reply_to.channel) == ("irc:receipt-1", Channel("irc", "#Chan"))
    assert remember == Remember("m1", Said("bob", sent.text))


def test_a_private_message_opens_a_private_conversation():
    net = Network()
    sent = only(net.handle(":bob!b@host PRIVMSG me :psst"))
    assert sent.channel == Channel("irc", "bob") and sent.text.plain == "psst"
    assert net.state.private.get(net.state.fold("bob")) == "bob"


def test_ctcp_requests_are_effects_and_actions_are_messages():
    net = Network()
    net.join("#chan", "bob")
    assert net.handle(":bob!b@host PRIVMSG me :\x01VERSION\x01") == [CtcpRequest("bob", "VERSION", "")]
    assert net.handle(":bob!b@host PRIVMSG me :\x01PING 123\x01") == [CtcpRequest("bob", "PING", "123")]
    assert net.handle(":bob!b@host NOTICE me :\x01VERSION x\x01") == []   # an answer, not a request
    assert net.handle(":bob!b@host PRIVMSG #chan :\x01DCC SEND x\x01") == []
    action = only(net.handle(":bob!b@host PRIVMSG #chan :\x01ACTION waves\x01"))
    assert action.action and action.text.plain == "waves"


def test_our_own_lines_coming_back_teach_their_msgid_and_are_never_relayed():
    net = Network()
    net.join("#chan")
    echo = "@label=irc:receipt-9;msgid=srv-9 :me!u@h PRIVMSG #chan :said by us"
    assert net.handle(echo) == [OwnEcho("srv-9", "irc:receipt-9")]
    assert net.handle(":me!u@h PRIVMSG #chan :no tags") == []
    assert net.handle("@label=x;msgid=srv-10 :Alice[b]!p@h PRIVMSG #chan :puppet") == [
        OwnEcho("srv-10", "x")]
    relayed = "@draft/relaymsg=me;msgid=srv-11;label=y :someone/x!u@h PRIVMSG #chan :relayed"
    assert net.handle(relayed) == [OwnEcho("srv-11", "y")]


def test_a_quit_is_one_leave_for_each_shared_channel():
    net = Network()
    net.join("#chan", "bob")
    net.join("#other", "bob")
    effects = net.handle(":bob!b@host QUIT :gone")
    assert sorted(e.channel.source for e in effects) == ["#Chan", "#other"]
    assert len({e.id for e in effects}) == 2 and net.state.known("bob") is None
    assert net.handle(":me!u@h QUIT :bye") == []


def test_a_topic_is_a_title_and_the_topic_numeric_only_state():
    net = Network()
    net.join("#chan", "bob")
    sent = only(net.handle(":bob!b@host TOPIC #chan :new topic"))
    assert sent.title == "new topic" and sent.user.username == "bob"
    assert net.handle(":srv 332 me #chan :from the server") == []
    assert net.state.channel("#chan").topic == "from the server"
    assert net.handle(":me!u@h TOPIC #chan :ours") == []


def test_a_private_notice_is_logged_not_relayed(caplog):
    net = Network()
    with caplog.at_level(logging.INFO, logger="chanmux_irc.incoming"):
        assert net.handle(":NickServ!s@services NOTICE me :You are now identified") == []
    assert any("notice from NickServ" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("mentions, expected", [("all", 1), ("prefix", 0), ("off", 0)])
def test_the_mentions_setting_decides_which_words_are_highlights(mentions, expected):
    state = NetworkState()
    incoming = Incoming("irc", state, nick=lambda: "me", mentions=mentions)
    incoming.handle(parse(":me!u@h JOIN #c"))
    incoming.handle(parse(":srv 353 me = #c :me bob"))
    incoming.handle(parse(":srv 366 me #c :End"))
    sent = incoming.convert(parse(":carol!c@h PRIVMSG #c :hello bob"))[0]
    assert len([s for s in sent.text if s.mention]) == expected


def test_part_quit_and_kick_reasons_come_with_the_leave():
    net = Network()
    net.join("#chan", "bob", "carol", "op", "dan", "fay")
    assert only(net.handle(":bob!b@host PART #chan :off to \x02lunch\x02")).reason == "off to lunch"
    assert only(net.handle(":fay!f@host PART #chan")).reason is None
    assert only(net.handle(":carol!c@host QUIT :Quit: see you")).reason == "Quit: see you"
    kick = only(net.handle(":op!o@host KICK #chan dan :spam"))
    assert (kick.left[0].username, kick.user.username, kick.reason) == ("dan", "op", "spam")


CHAN = Channel("irc", "#Chan")


def test_a_reaction_is_a_message_with_no_text_that_names_the_message_reacted_to():
    net = Network()
    net.join("#chan", "bob")
    sent = only(net.handle("@msgid=r1;+draft/react=👍;+draft/reply=m9 :bob!b@host TAGMSG #chan"))
    assert sent.id == "r1" and sent.channel == CHAN and not sent.text
    assert sent.user.username == "bob"
    assert sent.reaction == Reaction("👍", sent.reaction.target)
    assert (sent.reaction.target.id, sent.reaction.target.channel) == ("m9", CHAN)
    # to one of our lines: our receipt id
    mine = only(net.handle("@+draft/react=🎉;+draft/reply=srv-1 :bob!b@host TAGMSG #chan"))
    assert mine.reaction.target.id == "irc:receipt-1"
    taken_back = only(net.handle("@+draft/unreact=👍;+draft/reply=m9 :bob!b@host TAGMSG #chan"))
    assert taken_back.reaction.removed and taken_back.reaction.key == "👍"
    # some clients send it as a PRIVMSG, its text a fallback for clients without tags
    said = only(net.handle("@+draft/react=ok;+draft/reply=m9 :bob!b@host PRIVMSG #chan :ok"))
    assert said.reaction.key == "ok" and not said.text


@pytest.mark.parametrize("raw", [
    "@+draft/react=👍 :bob!b@host TAGMSG #chan",                     # to nothing
    "@+draft/reply=m9 :bob!b@host TAGMSG #chan",                     # no reaction
    "@+draft/react=\x02\x03;+draft/reply=m9 :bob!b@host TAGMSG #chan",  # nothing left of the key
    "@+draft/react=x;+draft/reply=m9 :bob!b@host TAGMSG #elsewhere",  # not our channel
    "@+draft/react=x;+draft/reply=m9 :bob!b@host TAGMSG",
    "@+draft/react=x;+draft/reply=m9 TAGMSG #chan",                  # from no one
])
def test_tag_messages_that_are_no_reaction_are_ignored(raw):
    net = Network()
    net.join("#chan", "bob")
    assert [e for e in net.handle(raw) if isinstance(e, SentMessage)] == []


def test_typing_notifications_are_effects_for_the_plug():
    net = Network()
    net.join("#chan", "bob")
    (typing,) = net.handle("@+typing=active :bob!b@host TAGMSG #chan")
    assert isinstance(typing, Typing) and typing.source == "#Chan" and typing.active
    assert typing.user.username == "bob"
    assert [e.active for e in net.handle("@+typing=paused :bob!b@host TAGMSG #chan")] == [False]
    assert [e.active for e in net.handle("@+typing=done :bob!b@host TAGMSG #chan")] == [False]
    assert net.handle("@+typing=bogus :bob!b@host TAGMSG #chan") == []
    (private,) = net.handle("@+typing=active :bob!b@host TAGMSG me")
    assert private.source == "bob"


def test_our_own_tag_messages_and_redactions_are_never_relayed():
    net = Network()
    net.join("#chan")
    echo = "@label=irc:r-7;msgid=srv-7;+draft/react=x;+draft/reply=m :me!u@h TAGMSG #chan"
    assert net.handle(echo) == [OwnEcho("srv-7", "irc:r-7")]
    assert net.handle("@+typing=active :me!u@h TAGMSG #chan") == []
    assert net.handle(":me!u@h REDACT #chan srv-7") == []


def test_a_redaction_deletes_the_message_it_names():
    net = Network()
    net.join("#chan", "bob")
    gone = only(net.handle(":bob!b@host REDACT #chan m9 :typo"))
    assert (gone.id, gone.channel, gone.deleted, gone.text) == ("m9", CHAN, True, None)
    assert only(net.handle(":op!o@host REDACT #chan srv-1")).id == "irc:receipt-1"
    assert net.handle(":bob!b@host REDACT #chan") == []
    assert net.handle(":bob!b@host REDACT #elsewhere m9") == []
