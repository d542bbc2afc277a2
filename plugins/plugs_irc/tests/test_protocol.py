"""Line parsing and safe formatting, tag escaping, case mapping, CTCP and ISUPPORT."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chanmux_irc.protocol import (
    Line,
    ServerInfo,
    UnsafeLine,
    casefold,
    ctcp,
    escape_tag_value,
    format_line,
    is_safe_target,
    parse,
    split_ctcp,
    unescape_tag_value,
)


def test_parse_tags_source_params_and_trailing():
    line = parse(r"@time=2024-01-01T00:00:00.000Z;msgid=a\:b\sc;+draft/reply=x;flag "
                 ":nick!user@host PRIVMSG #chan :hello  there \r\n")
    assert line == Line("PRIVMSG", ["#chan", "hello  there "],
                        {"time": "2024-01-01T00:00:00.000Z", "msgid": "a;b c", "+draft/reply": "x",
                         "flag": ""}, "nick!user@host")
    assert (line.nick, line.user, line.host, line.from_user) == ("nick", "user", "host", True)
    assert parse("PING :abc").params == ["abc"]
    assert parse(":srv 005 me A=1 B :are supported").params == ["me", "A=1", "B", "are supported"]
    assert parse(":srv 001 me :Welcome").command == "001"
    assert parse("privmsg #a b").command == "PRIVMSG"
    assert parse("CAP * LS :").params == ["*", "LS", ""]
    assert parse(":server.name NOTICE * :x").from_user is False


@pytest.mark.parametrize("raw", ["", "   ", "@a=b", ":prefix", ":prefix ", "@a :p", "12 x", "PRIV-MSG x",
                                 "\x00", ":nick!u@h ", "@;;; :x!y@z"])
def test_parse_refuses_lines_without_a_command(raw):
    assert parse(raw) is None


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_parse_never_raises(raw):
    line = parse(raw)
    assert line is None or line.command


@given(st.text())
def test_tag_values_round_trip(value):
    escaped = escape_tag_value(value)
    assert not any(ch in escaped for ch in "; \r\n")
    assert unescape_tag_value(escaped) == value


def test_tag_unescape_edge_cases():
    assert unescape_tag_value("a\\") == "a"          # lone trailing backslash dropped
    assert unescape_tag_value("\\x\\:") == "x;"      # unknown escape is the character itself
    assert unescape_tag_value("\\\\s") == "\\s"


def test_format_line_places_the_trailing_colon():
    assert format_line("PRIVMSG", "#chan", "hello world") == "PRIVMSG #chan :hello world"
    assert format_line("PRIVMSG", "#chan", "word") == "PRIVMSG #chan word"
    assert format_line("PRIVMSG", "#chan", ":colon") == "PRIVMSG #chan ::colon"
    assert format_line("PRIVMSG", "#chan", "") == "PRIVMSG #chan :"
    assert format_line("PRIVMSG", "#c", "x", tags={"+draft/reply": "a b;c"}) == \
        "@+draft/reply=a\\sb\\:c PRIVMSG #c x"


@pytest.mark.parametrize("params", [
    ["#chan", "hello\r\nQUIT :bye"], ["#chan", "a\nb"], ["#chan", "nul\0"], ["#ch\r\nan", "x"],
    ["#chan x", "text"], [":chan", "text"], ["", "text"],
])
def test_format_line_refuses_injection(params):
    with pytest.raises(UnsafeLine):
        format_line("PRIVMSG", *params)


def test_format_line_refuses_bad_commands_and_tags():
    with pytest.raises(UnsafeLine):
        format_line("PRIV MSG", "x")
    with pytest.raises(UnsafeLine):
        format_line("PRIVMSG", "#c", "x", tags={"bad key": "v"})
    # A tag value can hold anything: it is escaped, never breaks the line.
    assert "\r" not in format_line("PRIVMSG", "#c", "x", tags={"k": "a\r\nb"})


safe_middle = st.text(st.characters(blacklist_characters=" \r\n\0:", blacklist_categories=("Cs",)),
                      min_size=1).filter(lambda s: not s.startswith(":"))
safe_trailing = st.text(st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)))


@settings(max_examples=300, deadline=None)
@given(st.lists(safe_middle, max_size=5), safe_trailing,
       st.dictionaries(st.from_regex(r"\+?[a-z][a-z0-9-]{0,8}", fullmatch=True), safe_trailing, max_size=3))
def test_format_then_parse_gives_back_the_line(middle, trailing, tags):
    raw = format_line("PRIVMSG", *middle, trailing, tags=tags)
    assert "\r" not in raw and "\n" not in raw and "\0" not in raw
    line = parse(raw)
    assert line.command == "PRIVMSG"
    assert line.params == [*middle, trailing]
    assert line.tags == tags


def test_safe_targets():
    assert is_safe_target("#chan") and is_safe_target("&local") and is_safe_target("nick[m]")
    for bad in ["", "#a b", "#a,#b", "#a\r\nJOIN #b", "nick\0", ":x", "#a\x07"]:
        assert not is_safe_target(bad), bad


def test_casefold_by_casemapping():
    assert casefold("Nick[A]~") == "nick{a}^"
    assert casefold("Nick[A]~", "strict-rfc1459") == "nick{a}~"
    assert casefold("Nick[A]~", "ascii") == "nick[a]~"


def test_ctcp():
    assert split_ctcp("\x01ACTION waves\x01") == ("ACTION", "waves")
    assert split_ctcp("\x01ACTION waves") == ("ACTION", "waves")   # missing final \x01
    assert split_ctcp("\x01version\x01") == ("VERSION", "")
    assert split_ctcp("\x01") is None and split_ctcp("plain") is None
    assert ctcp("ACTION", "x") == "\x01ACTION x\x01"


def test_isupport_defaults_and_updates():
    info = ServerInfo()
    assert (info.chantypes, info.casemapping, info.linelen, info.nicklen) == ("#&", "rfc1459", 512, 9)
    info.update(["CHANTYPES=#&+", "CASEMAPPING=ascii", "NICKLEN=30", "LINELEN=1024",
                 "PREFIX=(qaohv)~&@%+", "STATUSMSG=@+", "MONITOR=100"])
    assert info.chantypes == "#&+" and info.is_channel("+chan") and not info.is_channel("nick")
    assert (info.casemapping, info.nicklen, info.linelen, info.prefix_chars) == ("ascii", 30, 1024, "~&@%+")
    assert info.monitor and info.statusmsg == "@+"
    info.update(["-MONITOR", "CHANTYPES="])
    assert not info.monitor and info.chantypes == "" and not info.is_channel("#x")
    info.update(["NICKLEN=nonsense", "LINELEN=100"])
    assert info.nicklen == 9 and info.linelen == 512


@pytest.fixture(scope="module")
def offline_plug(tmp_path_factory):
    """A real IRCPlug, never connected, that believes it is in #c with a few members."""
    from chanmux.testing import make_host
    from chanmux_irc.state import ChannelState

    config = {"plugs": {"irc": {"type": "irc", "server": "irc.example", "nick": "me"}}}
    plug = make_host(config, path=tmp_path_factory.mktemp("offline") / "c.toml").plugs["irc"]
    plug.network.info.update(["CHANTYPES=#&", "PREFIX=(ov)@+", "STATUSMSG=@+"])
    plug.network.channels["#c"] = ChannelState("#c")
    return plug


line_text = st.text(st.sampled_from(list("#&@+:!;=\\ \x01\x02\x03,abAB019*")), max_size=40)


@settings(max_examples=500, deadline=None)
@given(line_text, st.sampled_from(["PRIVMSG", "NOTICE", "JOIN", "PART", "KICK", "QUIT", "NICK",
                                   "TOPIC", "332", "331", "353", "366", "CHGHOST", "ACCOUNT"]),
       st.lists(line_text, max_size=4), line_text)
def test_incoming_never_raises_on_any_line(offline_plug, source, command, params, trailing):
    raw = f":{source} {command} {' '.join(p.replace(' ', '') or 'x' for p in params)} :{trailing}"
    line = parse(raw)
    if line is not None:
        for sent in offline_plug.incoming.convert(line):
            assert sent.id and sent.channel.plug == "irc"
        offline_plug._replies.clear()


any_command = st.one_of(st.from_regex(r"[A-Za-z]{1,12}|[0-9]{3}", fullmatch=True), st.text(max_size=8))
any_param = st.one_of(safe_middle, safe_trailing, st.text(max_size=20))
any_tags = st.dictionaries(st.one_of(st.from_regex(r"\+?(?:[A-Za-z0-9.-]{1,8}/)?[A-Za-z0-9-]{1,10}",
                                                   fullmatch=True), st.text(max_size=5)),
                           st.text(max_size=30), max_size=4)


@settings(max_examples=500, deadline=None)
@given(any_command, st.lists(any_param, max_size=6), any_tags, st.booleans())
def test_every_line_format_line_accepts_parses_back_to_the_same(command, params, tags, trailing):
    try:
        raw = format_line(command, *params, tags=tags, trailing=trailing)
    except UnsafeLine:
        return
    assert not any(ch in raw for ch in "\r\n\0")
    line = parse(raw)
    assert line is not None
    assert (line.command, line.params, line.tags, line.source) == (command.upper(), params, tags, None)


def test_format_line_refuses_nul_in_a_tag_value_and_writes_commands_in_capitals():
    with pytest.raises(UnsafeLine):
        format_line("PRIVMSG", "#c", "x", tags={"k": "a\0b"})
    assert format_line("privmsg", "#c", "x") == "PRIVMSG #c x"
