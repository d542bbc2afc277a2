"""Author names of relayed messages: a `str.format` template, optionally made highlight-safe.

Shared by the hooks that relay messages (sync, forward, third-party ones), so that every
relay names authors with the same variables and the same zero-width-space option.
"""

from __future__ import annotations

import string
from typing import Any

import attrs

from .model import Message, User

#: Template variables, with what they hold.
VARIABLES = {
    "real_name": "the author's real name (empty if unknown)",
    "username": "the author's username (empty if unknown)",
    "name": "the best name to show: real name, else username, else id",
    "id": "the author's id on their network",
    "network": "the network name of the plug the message came from",
    "plug": "the name of the plug the message came from",
    "channel": "the title of the channel the message came from (else its id)",
    "label": "the sync label; for forwards, the config name of the channel the message came from",
}
ZWSP = "\u200b"


def _break(name: str) -> str:
    """`name` with a zero-width space after its first character, so it highlights nobody."""
    return name[:1] + ZWSP + name[1:] if name else name


class NameFormat:
    """A checked name template. `render` gives the name to put in the copy's `user.real_name`."""

    __slots__ = ("template", "no_highlight", "fields", "needs_channel", "plain")

    def __init__(self, template: str, no_highlight: bool = False) -> None:
        self.template = template
        self.no_highlight = no_highlight
        self.fields = self.check(template)
        self.needs_channel = "channel" in self.fields
        self.plain = template == "{name}" and not no_highlight

    @staticmethod
    def check(template: str) -> set[str]:
        """The variables `template` uses; ValueError naming the problem if it is not valid."""
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"not a valid name template ({exc})") from None
        fields: set[str] = set()
        for _text, field, _spec, _conv in parsed:
            if field is None:
                continue
            base = field.split(".", 1)[0].split("[", 1)[0]
            if base != field or not base:
                raise ValueError(f'template field "{{{field}}}" must be a plain variable '
                                 f"({', '.join(sorted(VARIABLES))})")
            if base not in VARIABLES:
                raise ValueError(f'unknown template variable "{{{base}}}" '
                                 f"(variables: {', '.join(sorted(VARIABLES))})")
            fields.add(base)
        try:
            template.format(**{k: "x" for k in VARIABLES})
        except (ValueError, IndexError, KeyError) as exc:
            raise ValueError(f"not a valid name template ({exc})") from None
        return fields

    def render(self, user: User, *, network: str, plug: str, channel: str, label: str) -> str:
        """The formatted name; the user's best name when the template renders empty."""
        display = user.display
        if self.plain:
            return display
        real, username = user.real_name or "", user.username or ""
        if self.no_highlight:
            real, username, display = _break(real), _break(username), _break(display)
        name = self.template.format(real_name=real, username=username, name=display,
                                    id=user.id or "", network=network, plug=plug,
                                    channel=channel, label=label)
        return name if name.strip() else display

    def apply(self, user: User | None, **context: str) -> User | None:
        """A copy of `user` whose `real_name` is the rendered name (None stays None)."""
        if user is None:
            return None
        name = self.render(user, **context)
        if name == user.real_name:
            return user
        return User(id=user.id, plug=user.plug, username=user.username, real_name=name,
                    avatar=user.avatar, link=user.link, is_self=False, raw=user.raw)


@attrs.frozen
class Overrides:
    """Relay settings a relay hook's `[hooks.NAME.plugs.PLUG]` (or per-label) table changes;
    unset keys fall back to the broader setting. Shared by sync, forward and third-party relays."""

    name_format: str | None = None
    no_highlight: bool | None = None
    joins: bool | None = None
    renames: bool | None = None
    edits: bool | None = None
    deletes: bool | None = None


def relayed_fields(msg: Message, *, joins: bool, renames: bool) -> dict[str, Any] | None:
    """The event fields of `msg` a relay's copy carries under its settings, or None when the
    copy would say nothing at all.

    `joins` covers membership: joins, leaves and changes of name (an IRC nick, a Matrix display
    name); `renames` covers a new channel title. Text and attachments always go.
    """
    member = joins and msg.is_membership
    fields: dict[str, Any] = {
        "joined": msg.joined if member else [],
        "left": msg.left if member else [],
        "renamed": msg.renamed if member else None,
        "title": msg.title if renames else None,
    }
    if not (msg.text or msg.attachments or member or fields["title"] is not None):
        return None
    return fields
