"""Every line the plug builds fits its limit, and splitting never raises, whatever the text,
the names and the budget (no network: the splitter and the line builders themselves)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chanmux import Message, RichText, Segment, User
from chanmux_irc.config import IRCConfig
from chanmux_irc.connection import Connection, Identity, Outbox, Settings
from chanmux_irc.flood import TokenBucket
from chanmux_irc.formatting import render, render_line
from chanmux_irc.outgoing import Renderer
from chanmux_irc.protocol import (
    LINE_BYTES,
    ServerInfo,
    UnsafeLine,
    ctcp_reply,
    cut_bytes,
    fit_line,
    is_safe_target,
    join_lines,
    parse,
)
from chanmux_irc.puppets import REALNAME_BYTES, puppet_nick, puppet_realname
from chanmux_irc.split import measure, relay_prefix, split, text_budget

from test_outgoing import budget as channel_budget

CJK = "漢字仮名交じり文" * 25  # 200 characters, 600 bytes
LONG_URL = "https://example.org/" + "a" * 600
IRC_USER = User(id="dave", plug="irc", username="d" * 600)
MX_USER = User(id="@e:x", plug="mx", username="@e:x")


def irc_mention(seg: Segment) -> str:
    """As the plug's renderer names a mention: the nick of someone on this network."""
    user = seg.mention
    return user.username if user is not None and user.plug == "irc" and user.username else seg.text


def size(chunk: RichText, encoding: str = "utf-8") -> int:
    return measure(encoding, irc_mention)(chunk)


# -- the splitter --------------------------------------------------------------------------


def test_a_long_link_is_shown_whole_across_lines_instead_of_dropping_the_message():
    """It raised `ValueError: character 't' alone is larger than N bytes`; the message was
    lost (sync logged the failure and IRC never saw it)."""
    text = RichText([Segment("see "), Segment("the docs", link=LONG_URL, bold=True),
                     Segment(" for more")])
    chunks = split(text, 400, mention=irc_mention)
    assert all(size(c) <= 400 for c in chunks) and len(chunks) == 2
    shown = "".join(render_line(c) for c in chunks).replace("\x02", "").replace("\x0f", "")
    assert shown == f"see the docs <{LONG_URL}> for more"
    assert all(s.bold for c in chunks for s in c if "a" * 10 in s.text)


def test_a_long_mention_name_is_broken_across_lines():
    text = RichText([Segment("hi "), Segment("Dave", mention=IRC_USER), Segment(" and "),
                     Segment("Eve", mention=MX_USER)])
    chunks = split(text, 300, mention=irc_mention)
    assert all(size(c) <= 300 for c in chunks)
    assert "".join(render(c, irc_mention) for c in chunks) == f"hi {'d' * 600} and Eve"


def test_links_and_mentions_that_fit_are_never_cut():
    text = RichText([Segment("word " * 70), Segment("a link", link="https://x.example/page"),
                     Segment(" " + "more " * 10)])
    chunks = split(text, 360)
    assert RichText.join(chunks) == text
    assert sum("https://x.example/page" in render(c) for c in chunks) == 1


def test_a_token_longer_than_a_line_is_broken_and_a_character_larger_than_the_budget_goes_alone():
    token = RichText([Segment("x" * 65536, italic=True)])
    chunks = split(token, 400)
    assert RichText.join(chunks) == token and all(size(c) <= 400 for c in chunks)
    assert [c.plain for c in split(RichText.plain_text("a✓b"), 2)] == ["a", "✓", "b"]
    assert [c.plain for c in split(RichText.plain_text("abc"), -5)] == ["a", "b", "c"]


texts = st.lists(st.builds(
    Segment, text=st.text(min_size=1, max_size=60), bold=st.booleans(), italic=st.booleans(),
    underline=st.booleans(), strike=st.booleans(), code=st.booleans(), pre=st.booleans(),
    link=st.one_of(st.none(), st.sampled_from(["https://x.example/", LONG_URL[:150], "mailto:a@b"]),
                   st.text(max_size=40)),
    mention=st.one_of(st.none(), st.just(MX_USER), st.builds(
        lambda n: User(id=n, plug="irc", username=n), st.text(min_size=1, max_size=200)))),
    max_size=12)


@settings(max_examples=300, deadline=None)
@given(texts, st.integers(min_value=-5, max_value=500), st.sampled_from(["utf-8", "latin-1"]))
def test_split_any_text_any_formatting_any_budget(segments, room, encoding):
    text = RichText(segments)
    chunks = split(text, room, encoding, irc_mention)
    assert chunks
    if room >= 9:  # five formatting codes and the longest UTF-8 character
        assert all(size(c, encoding) <= room for c in chunks), [size(c, encoding) for c in chunks]
    else:
        assert all(size(c, encoding) <= room or len(c) <= 1 for c in chunks)
    # joined, IRC shows exactly what the whole text shows...
    assert render(RichText.join(chunks), irc_mention) == render(text, irc_mention)
    # ...and it is the text itself when every link and mention fits in a line
    if all(size(RichText([s]), encoding) <= room for s in segments if s.link or s.mention):
        assert RichText.join(chunks) == text


# -- line builders -------------------------------------------------------------------------

commands = st.from_regex(r"[A-Za-z]{1,10}|[0-9]{3}", fullmatch=True)
middles = st.text(st.characters(blacklist_characters=" \r\n\0", blacklist_categories=("Cs",)),
                  min_size=1, max_size=30).filter(lambda s: not s.startswith(":"))
trailings = st.text(st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)),
                    max_size=700)


@settings(max_examples=300, deadline=None)
@given(commands, st.lists(middles, max_size=4), trailings, st.integers(min_value=0, max_value=600))
def test_fit_line_cuts_the_last_parameter_on_a_character_boundary(command, middle, last, limit):
    try:
        line = fit_line(command, *middle, last, limit=limit)
    except UnsafeLine:
        assert len(" ".join([command, *middle, ":"]).encode()) > limit
        return
    assert len(line.encode()) <= limit
    parsed = parse(line)
    assert parsed.command == command.upper()
    assert parsed.params[:-1] == middle and last.startswith(parsed.params[-1])
    if len(" ".join([command, *middle, ":" + last]).encode()) <= limit:
        assert parsed.params[-1] == last


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=-2, max_value=300),
       st.sampled_from(["utf-8", "latin-1", "utf-16-le"]))
def test_cut_bytes_keeps_whole_characters(text, limit, encoding):
    cut = cut_bytes(text, limit, encoding)
    assert text.startswith(cut)
    assert len(cut.encode(encoding, "replace")) <= max(limit, 0)
    if cut != text:
        assert len(text[: len(cut) + 1].encode(encoding, "replace")) > limit


channel_names = st.text(st.characters(blacklist_characters=" ,\r\n\0\x07:",
                                      blacklist_categories=("Cs", "Cc")),
                        min_size=1, max_size=200).map(lambda s: "#" + s)


@settings(max_examples=200, deadline=None)
@given(st.lists(channel_names, max_size=40, unique=True),
       st.dictionaries(channel_names, st.text(st.characters(blacklist_characters=" ,\r\n\0:",
                                                            blacklist_categories=("Cs",)),
                                              min_size=1, max_size=30), max_size=10),
       st.integers(min_value=100, max_value=600))
def test_join_lines_fit_and_pair_every_key_with_its_channel(channels, keys, limit):
    lines, too_long = join_lines(channels, keys, limit)
    joined: list[str] = []
    for line in lines:
        assert len(line.encode()) <= limit
        params = parse(line).params
        names = params[0].split(",")
        joined += names
        if len(params) > 1:
            assert params[1].split(",") == [keys[n] for n in names]
        else:
            assert not any(keys.get(n) for n in names)
    assert sorted(joined + too_long) == sorted(channels)
    for chan in too_long:
        assert len(f"JOIN {chan} {keys.get(chan, '')}".encode()) + 1 > limit


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.text(max_size=20), st.text(max_size=20),
       st.integers(min_value=1, max_value=40))
def test_puppet_nicks_are_valid_and_fit_nicklen(name, prefix, suffix, nicklen):
    nick = puppet_nick(name, prefix, suffix, nicklen)
    assert 1 <= len(nick) <= nicklen
    assert is_safe_target(nick) and not nick[0].isdigit() and nick[0] != "-"
    assert all(ch.isascii() and (ch.isalnum() or ch in "_-[]\\`^{}|") for ch in nick)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=400)), st.sampled_from(["utf-8", "latin-1"]))
def test_puppet_real_names_fit_what_servers_keep(display, encoding):
    realname = puppet_realname(display, encoding)
    assert len(realname.encode(encoding, "replace")) <= REALNAME_BYTES
    assert realname == "chanmux" or realname.endswith(" (chanmux)")
    assert not any(ord(ch) < 32 for ch in realname)


def connection(username: str = "chanmux", realname: str = "r", nick: str = "bridge") -> Connection:
    return Connection(Settings(host="irc.example", port=6667),
                      Identity(nick=nick, username=username, realname=realname),
                      outbox=Outbox(), bucket=TokenBucket(4, 0.5), handler=None,  # type: ignore[arg-type]
                      log=logging.getLogger("test"), info=ServerInfo())


def test_a_puppet_with_a_200_character_cjk_name_has_a_user_line_that_fits():
    """The realname was the display name + " (chanmux)" uncut: a 629-byte USER line, and
    ngircd closed the connection."""
    realname = puppet_realname(CJK)
    assert realname.endswith("… (chanmux)") and len(realname.encode()) <= REALNAME_BYTES
    line = connection(realname=realname).user_line()
    assert len(line.encode()) <= LINE_BYTES
    assert connection(realname=CJK * 3).user_line().encode().__len__() <= LINE_BYTES


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=600), st.text(max_size=900), st.text(min_size=1, max_size=60),
       st.integers(min_value=1, max_value=50))
def test_user_nick_and_quit_lines_always_fit(username, realname, nick, nicklen):
    conn = connection(username, realname)
    user = parse(conn.user_line())
    assert len(conn.user_line().encode()) <= LINE_BYTES
    assert user.command == "USER" and len(user.params) == 4 and user.params[0]
    nick = "".join(ch for ch in nick if ch not in " \r\n\0") or "n"
    conn.info.update([f"NICKLEN={nicklen}"])
    assert parse(conn.nick_line(nick)).params == [nick[:nicklen]]
    quit_line = conn.relayed_line("QUIT", "bye " + realname.replace("\r", "").replace("\n", "")
                                  .replace("\0", ""))
    relayed = f":{conn.nick}!~chanmux@{'x' * 63} {quit_line.replace('QUIT :', 'QUIT :Quit: ', 1)}"
    assert len(relayed.encode()) <= LINE_BYTES


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["PING", "VERSION", "CLIENTINFO"]), st.text(max_size=600),
       st.integers(min_value=0, max_value=450))
def test_ctcp_answers_fit_the_line_the_server_relays(command, answer, room):
    reply = ctcp_reply(command, answer, room)
    if reply is None:
        return
    assert len(reply.encode()) <= room
    assert reply.startswith(f"\x01{command} ") and reply.endswith("\x01")
    assert not any(ch in reply[1:-1] for ch in "\r\n\0\x01")


@pytest.mark.parametrize("version", ["v" * 600, CJK * 2])
def test_a_long_ctcp_version_is_cut(tmp_path, version):
    import anyio

    from chanmux.testing import make_host

    config = {"plugs": {"irc": {"type": "irc", "server": "irc.example", "nick": "me",
                                "ctcp_version": version}}}
    plug = make_host(config, path=tmp_path / "c.toml").plugs["irc"]

    async def ask() -> None:
        plug.answer_ctcp("someone", "VERSION", "")

    anyio.run(ask)
    (reply,) = plug._replies
    text = parse(reply).params[-1]
    assert text.startswith("\x01VERSION ") and text.endswith("\x01")
    assert len(text.encode()) <= plug.budget("someone", "NOTICE")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300), texts, st.booleans(), st.booleans())
def test_every_line_a_message_becomes_fits(name, segments, action, notice):
    config = IRCConfig(server="irc.example", nick="bridge", max_lines=1000, nick_colours=True)
    renderer = Renderer("irc", config, {}.get)
    msg = Message(text=RichText(segments), user=User(id="u", real_name=name or None),
                  action=action, notice=notice)
    for line in renderer.lines(msg, "#chan", channel_budget):
        room = text_budget(512, relay_prefix("bridge", "~bridge", "host.example", line.command,
                                             "#chan"))
        assert len(line.text(renderer.mention).encode()) <= room
