"""The keys of a `type = "matrix"` plug, checked by the host's strict config reader."""

from __future__ import annotations

import string

import attrs
from attrs.validators import optional

from chanmux import validators

#: Variables a name template may use.
NAME_VARIABLES = ("name",)


_check_homeserver = validators.url("http", "https", example="https://matrix.example.org")


def _check_user_id(_inst: object, _attr: attrs.Attribute, value: str) -> None:
    local, sep, server = value.partition(":")
    if not (local.startswith("@") and len(local) > 1 and sep and server
            and not any(c.isspace() or ord(c) < 32 for c in value)):
        shown = value.encode("unicode_escape").decode("ascii")
        raise ValueError(f'expected a full Matrix user id like "@bridge:example.org", got "{shown}"')


def _check_template(_inst: object, attr: attrs.Attribute, value: str) -> None:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError as exc:
        raise ValueError(f"not a valid template ({exc})") from None
    unknown = fields - set(NAME_VARIABLES)
    if unknown:
        raise ValueError(f'unknown variable "{{{sorted(unknown)[0]}}}" (only {{name}})')


def _check_rooms(_inst: object, _attr: attrs.Attribute, value: list[str]) -> None:
    for room in value:
        if not ((room.startswith("!") and len(room) > 1) or (room.startswith("#") and ":" in room)):
            raise ValueError(f'"{room}" is neither a room id (!id) nor an alias (#name:server)')


def _check_prefix(_inst: object, _attr: attrs.Attribute, value: str) -> None:
    if not value or any(c not in "abcdefghijklmnopqrstuvwxyz0123456789-._=/" for c in value):
        raise ValueError(f'"{value}" cannot start a Matrix user id: use lower-case letters, '
                         f'digits and -._=/ (e.g. "irc_")')


@attrs.frozen
class MatrixConfig:
    """Keys of a `type = "matrix"` plug (seconds for every time)."""

    homeserver: str = attrs.field(validator=_check_homeserver)
    user_id: str = attrs.field(validator=_check_user_id)
    access_token: str | None = attrs.field(default=None, validator=optional(validators.non_empty))
    password: str | None = attrs.field(default=None, validator=optional(validators.non_empty))
    device_name: str = attrs.field(default="chanmux", validator=validators.non_empty)
    display_name: str | None = None
    rooms: list[str] = attrs.field(factory=list, validator=_check_rooms)
    accept_invites: bool = False
    max_catchup_age: float = attrs.field(default=3600.0, validator=validators.non_negative)
    name_format: str = attrs.field(default="{name}: ", validator=_check_template)
    action_name_format: str = attrs.field(default="{name} ", validator=_check_template)
    request_timeout: float = attrs.field(default=30.0, validator=validators.positive)
    sync_timeout: float = attrs.field(default=30.0, validator=validators.positive)
    send_retry_for: float = attrs.field(default=20.0, validator=validators.positive)
    retry_max_delay: float = attrs.field(default=10.0, validator=validators.positive)
    timeline_limit: int = attrs.field(default=50, validator=validators.positive)
    #: the application service's registration file (relative to the config file's folder):
    #: set, the plug runs as an application service (`chanmux matrix-registration` writes it)
    registration: str | None = attrs.field(default=None, validator=optional(validators.non_empty))
    ghost_prefix: str = attrs.field(default="chanmux_", validator=_check_prefix)
    #: a burst of one person's lines from a network that cannot edit them (IRC) goes out as
    #: one event where they pile up (`Capabilities.merge`): one event for a pasted block
    merge_lines: bool = True

    def __attrs_post_init__(self) -> None:
        if not self.access_token and not self.password and not self.registration:
            raise ValueError("give access_token or password (the bridge account's credentials), "
                             "or registration (to run as an application service)")


__all__ = ["MatrixConfig"]
