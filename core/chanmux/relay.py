"""What a relay hook does with each copy: the author's name (a `str.format` template,
optionally made highlight-safe), the per-plug and per-label overrides of its settings, the
policy they resolve to, and which fields of a message a copy carries.

Shared by the hooks that relay messages (sync, forward, third-party ones), so that every
relay names authors with the same variables, reads the same override tables and applies
them the same way.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator
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


@attrs.frozen
class Policy:
    """What a relay's copies to one target do: its settings with the overrides that apply
    there resolved (see `Policies`)."""

    name: NameFormat
    joins: bool
    renames: bool
    edits: bool
    deletes: bool

    @classmethod
    def resolve(cls, config: Any, *layers: Overrides | None) -> Policy:
        """The policy of `config` (an object with an attribute for each `Overrides` key, such
        as a relay hook's config) under `layers`, broadest first: a later layer's set keys
        win, None layers and unset keys change nothing."""
        values = {f.name: getattr(config, f.name) for f in attrs.fields(Overrides)}
        for layer in layers:
            if layer is None:
                continue
            for f in attrs.fields(Overrides):
                value = getattr(layer, f.name)
                if value is not None:
                    values[f.name] = value
        return cls(NameFormat(values["name_format"], values["no_highlight"]),
                   joins=values["joins"], renames=values["renames"], edits=values["edits"],
                   deletes=values["deletes"])


class Policies:
    """The policies of a relay hook's config, each resolved once.

    The config has the `Overrides` keys as its own settings, `plugs` (a mapping of plug name
    to `Overrides`: `[hooks.NAME.plugs.PLUG]`) and optionally `labels` (label to `Overrides`,
    `[hooks.NAME.labels.LABEL]`); a plug's table wins over a label's, which wins over the
    hook's own keys.
    """

    __slots__ = ("config", "host", "_resolved")

    def __init__(self, config: Any, host: Any = None) -> None:
        self.config = config
        #: with the host (since 0.2.4), `no_highlight` applies only where names said in text
        #: notify people (`Capabilities.highlights`: IRC), so names stay whole elsewhere
        self.host = host
        self._resolved: dict[tuple[str, str | None], Policy] = {}

    def get(self, plug: str, label: str | None = None) -> Policy:
        """The policy of copies sent to `plug` (for `label`, if the hook has labels)."""
        key = (plug, label)
        policy = self._resolved.get(key)
        if policy is None:
            labels = getattr(self.config, "labels", None) or {}
            policy = Policy.resolve(self.config, labels.get(label) if label is not None else None,
                                    self.config.plugs.get(plug))
            target = self.host.plugs.get(plug) if self.host is not None else None
            if policy.name.no_highlight and target is not None and not target.capabilities.highlights:
                policy = attrs.evolve(policy, name=NameFormat(policy.name.template, False))
            self._resolved[key] = policy
        return policy

    def problems(self, where: str, plugs: Iterable[str]) -> Iterator[tuple[str, str]]:
        """`(path, problem)` for each override table of a plug not in `plugs` (the host's) and
        each name template of the config and its tables that is not valid; `where` is the
        hook's config path (`hooks.NAME`)."""
        known = sorted(plugs)
        for plug in self.config.plugs:
            if plug not in known:
                yield (f"{where}.plugs.{plug}",
                       f'unknown plug "{plug}" (plugs: {", ".join(known) or "none"})')
        layers: list[tuple[str, Any]] = [(where, self.config)]
        for section in ("labels", "plugs"):
            for name, layer in (getattr(self.config, section, None) or {}).items():
                layers.append((f"{where}.{section}.{name}", layer))
        for path, layer in layers:
            if layer.name_format is not None:
                try:
                    NameFormat.check(layer.name_format)
                except ValueError as exc:
                    yield (f"{path}.name_format", str(exc))


def relayed_fields(msg: Message, *, joins: bool, renames: bool) -> dict[str, Any] | None:
    """The event fields of `msg` a relay's copy carries under its settings, or None when the
    copy would say nothing at all.

    `joins` covers membership: joins, leaves (with their `reason`) and changes of name (an IRC
    nick, a Matrix display name); `renames` covers a new channel title. Text, attachments and
    a reaction always go.
    """
    member = joins and msg.is_membership
    fields: dict[str, Any] = {
        "joined": msg.joined if member else [],
        "left": msg.left if member else [],
        "renamed": msg.renamed if member else None,
        "reason": msg.reason if member and msg.left else None,
        "title": msg.title if renames else None,
        "reaction": msg.reaction,
    }
    if not (msg.text or msg.attachments or member or msg.reaction is not None
            or fields["title"] is not None):
        return None
    return fields
