"""The keys of a `type = "irc"` plug, checked by the host's strict config reader."""

from __future__ import annotations

import codecs
import re
import string
from typing import Literal

import attrs
from attrs.validators import optional

from chanmux import validators

_BAD_NICK = re.compile(r"[\s\x00-\x1f,*?!@:#&]")
_LINE_BREAK = re.compile(r"[\r\n\0]")


def _nick(_inst: object, attr: attrs.Attribute, value: str | list[str]) -> None:
    for nick in [value] if isinstance(value, str) else value:
        if not nick or _BAD_NICK.search(nick) or nick[0].isdigit() or nick[0] == "-":
            raise ValueError(f'"{nick}" is not a valid IRC nick')


def _one_line(_inst: object, attr: attrs.Attribute, value: str | list[str] | dict[str, str] | None) -> None:
    if value is None:
        return
    items = [value] if isinstance(value, str) else list(value) + (
        list(value.values()) if isinstance(value, dict) else [])
    for item in items:
        if _LINE_BREAK.search(item):
            raise ValueError(f"must not contain line breaks or NUL ({item!r})")


def _channels(_inst: object, attr: attrs.Attribute, value: list[str] | dict[str, str]) -> None:
    for name in value:
        if not name or re.search(r"[\s,\x00-\x1f]", name):
            raise ValueError(f'"{name}" is not a valid channel name')


def _encoding(_inst: object, attr: attrs.Attribute, value: str) -> None:
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f'unknown encoding "{value}"') from None


def _template(_inst: object, attr: attrs.Attribute, value: str) -> None:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError as exc:
        raise ValueError(f"not a valid template ({exc})") from None
    if fields - {"name"}:
        raise ValueError(f'unknown variable "{{{sorted(fields - {"name"})[0]}}}" '
                         "(only {name})")
    _one_line(_inst, attr, value)


_SUFFIX = re.compile(r"[A-Za-z0-9_\-\[\]\\`^{}|]{1,10}")


def _relay_suffix(_inst: object, attr: attrs.Attribute, value: str | None) -> None:
    if value is not None and not _SUFFIX.fullmatch(value):
        raise ValueError(f'must be 1 to 10 letters, digits or _-[]\\`^{{}}| (a part of a nick), '
                         f'got "{value}"')


def _at_least_two(_inst: object, attr: attrs.Attribute, value: int) -> None:
    if value < 2:
        raise ValueError(f"must be at least 2 (one line of text and the line with the link "
                         f"to the whole text or the truncation notice), got {value}")


@attrs.frozen
class IRCConfig:
    """Keys of a `type = "irc"` plug (seconds for every time). README.md documents each."""

    server: str = attrs.field(validator=validators.hostname)
    nick: str = attrs.field(validator=_nick)
    port: int | None = attrs.field(default=None, validator=optional(validators.port))
    tls: bool = True
    tls_verify: bool = True
    ca_file: str | None = attrs.field(default=None, validator=optional(validators.non_empty))
    client_cert: str | None = attrs.field(default=None, validator=optional(validators.non_empty))
    client_key: str | None = attrs.field(default=None, validator=optional(validators.non_empty))
    password: str | None = attrs.field(default=None, validator=_one_line)
    alt_nicks: list[str] = attrs.field(factory=list, validator=_nick)
    username: str | None = attrs.field(default=None, validator=[optional(validators.non_empty), _one_line])
    realname: str = attrs.field(default="chanmux bridge", validator=[validators.non_empty, _one_line])
    sasl_mechanism: Literal["PLAIN", "EXTERNAL"] | None = None
    sasl_username: str | None = attrs.field(default=None, validator=[optional(validators.non_empty), _one_line])
    sasl_password: str | None = attrs.field(default=None, validator=_one_line)
    sasl_required: bool = True
    commands: list[str] = attrs.field(factory=list, validator=_one_line)
    join: list[str] = attrs.field(factory=list, validator=_channels)
    channel_keys: dict[str, str] = attrs.field(factory=dict, validator=[_channels, _one_line])
    encoding: str = attrs.field(default="utf-8", validator=_encoding)
    fallback_encoding: str = attrs.field(default="latin-1", validator=_encoding)
    flood_burst: int = attrs.field(default=4, validator=validators.positive)
    flood_rate: float = attrs.field(default=0.5, validator=validators.non_negative)
    ping_interval: float = attrs.field(default=60.0, validator=validators.positive)
    ping_timeout: float = attrs.field(default=60.0, validator=validators.positive)
    connect_timeout: float = attrs.field(default=30.0, validator=validators.positive)
    join_timeout: float = attrs.field(default=10.0, validator=validators.non_negative)
    nick_regain_interval: float = attrs.field(default=60.0, validator=validators.non_negative)
    quit_message: str = attrs.field(default="chanmux", validator=_one_line)
    ctcp_version: str | None = attrs.field(default="chanmux IRC bridge", validator=_one_line)
    author_format: str = attrs.field(default="<{name}> ", validator=_template)
    action_format: str = attrs.field(default="* {name} ", validator=_template)
    actions: Literal["text", "ctcp"] = "text"
    nick_colours: bool = False
    anti_highlight: bool = False
    max_lines: int = attrs.field(default=10, validator=_at_least_two)
    long_messages: Literal["link", "truncate"] = "link"
    edits: Literal["auto", "full", "none"] = "auto"
    edit_marker: str = attrs.field(default="* correction: ", validator=_one_line)
    reply_quote: int = attrs.field(default=40, validator=validators.non_negative)
    mentions: Literal["all", "prefix", "off"] = "all"
    monospace: bool = False
    reactions: Literal["auto", "tags", "text", "none"] = "auto"
    deletions: Literal["notice", "none"] = "notice"
    typing: bool = True
    relaymsg: bool = True
    relaymsg_suffix: str | None = attrs.field(default=None, validator=_relay_suffix)
    text_cache: int = attrs.field(default=5000, validator=validators.non_negative)
    puppets: bool = False
    puppet_prefix: str = attrs.field(default="", validator=_one_line)
    puppet_suffix: str = attrs.field(default="[b]", validator=_one_line)
    puppet_max: int = attrs.field(default=20, validator=validators.positive)
    puppet_idle: float = attrs.field(default=3600.0, validator=validators.positive)
    puppet_flood_burst: int = attrs.field(default=4, validator=validators.positive)
    puppet_flood_rate: float = attrs.field(default=0.5, validator=validators.non_negative)

    def __attrs_post_init__(self) -> None:
        if self.sasl_mechanism == "PLAIN" and not (self.sasl_username and self.sasl_password):
            raise ValueError("sasl_mechanism PLAIN needs sasl_username and sasl_password")
        if self.sasl_mechanism == "EXTERNAL" and not (self.tls and self.client_cert):
            raise ValueError("sasl_mechanism EXTERNAL needs tls = true and a client_cert")
        if bool(self.client_key) and not self.client_cert:
            raise ValueError("client_key given without client_cert")

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (6697 if self.tls else 6667)


__all__ = ["IRCConfig"]
