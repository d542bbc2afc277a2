"""Messages to IRC lines: author prefix, actions, edits, replies, events and attachments, split
to fit the server's line length, with a cap on lines per message.

Rendering is in two steps because a message longer than the cap may end with a link to its
whole text, which the plug makes (asynchronously) between them: `Renderer.render` gives every
line and the whole text, `Renderer.fit` applies the cap with that link or a truncation notice."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from chanmux import File, Hold, Location, Message, Receipt, RichText, Segment

from .config import IRCConfig
from .edits import compact_correction
from .formatting import clean, coloured, render_line, shown, without_monospace
from .split import measure, split
from .state import Said

#: Longest author name shown (characters); longer names are cut with an ellipsis.
MAX_NAME = 48
#: Fewer bytes than this left for the text after the author's name: the name is left out.
MIN_ROOM = 32
ZWSP = "\u200b"
#: The capability sending a line as someone else (`RELAYMSG`) needs.
RELAYMSG_CAP = "draft/relaymsg"
#: Capabilities the commands that are not messages need.
NEEDS = {"TAGMSG": "message-tags", "REDACT": "draft/message-redaction"}
#: Longest leave reason shown (characters).
MAX_REASON = 200
#: Longest reaction key shown (characters): a key is an emoji or a short word.
MAX_KEY = 32


def flat(text: str) -> str:
    """`text` as one line: line breaks and runs of white space made one space, control
    characters (formatting codes) dropped."""
    return " ".join(clean(" ".join(text.split())).split())


@attrs.define
class OutLine:
    """One line waiting to be sent: rendered at send time, so it can still be re-split if
    our own prefix on the server has grown since it was made."""

    target: str
    command: str
    head: str
    body: RichText
    action: bool = False
    receipt: str | None = None
    #: client tags of a TAGMSG (a reaction)
    tags: dict[str, str] | None = None
    #: parameters after the target (REDACT's msgid)
    params: tuple[str, ...] = ()
    #: the nick a RELAYMSG line shows as its sender (`alice/m`); where the server cannot
    #: relay (any more), the line is said with `relay_head` before it instead
    relay: str | None = None
    relay_head: str = ""
    #: On the last line of a message: released once the server confirmed the line (or it was
    #: kept in the database at a stop), so the plug the message came from knows it is done.
    hold: Hold | None = attrs.field(default=None, eq=False, repr=False)
    #: Forgets the line in the plug's journal of unsent lines (once the server confirmed it);
    #: on the last piece of a line split at send time only.
    forget: Callable[[], None] | None = attrs.field(default=None, eq=False, repr=False)

    def release(self) -> None:
        """Its message no longer waits for it (it is kept for the next start)."""
        hold, self.hold = self.hold, None
        if hold is not None:
            hold.release()

    def done(self) -> None:
        """The server confirmed it (or it was given up): nothing more to do for it."""
        self.release()
        forget, self.forget = self.forget, None
        if forget is not None:
            forget()

    def text(self, mention: Callable[[Segment], str] | None = None) -> str:
        line = self.head + render_line(self.body, mention)
        return f"\x01ACTION {line}\x01" if self.action else line

    @property
    def needs(self) -> str | None:
        """The capability the server must have acknowledged for this line to be sent as it is."""
        if self.relay is not None:
            return RELAYMSG_CAP
        return NEEDS.get(self.command)

    def plain(self) -> OutLine | None:
        """The line as a server without `needs` takes it: a RELAYMSG line said by us with its
        author before it; a TAGMSG or REDACT line its text (`body`) said instead, or None
        (nothing to say) when it has none."""
        if self.relay is not None:
            return attrs.evolve(self, relay=None, head=self.relay_head, action=False,
                                relay_head="")
        if not self.body:
            return None
        return attrs.evolve(self, command="PRIVMSG", tags=None, params=())


Budget = Callable[[str, bool], int]


@attrs.define
class Rendering:
    """Every line that says one message (before the cap on lines per message) and what the
    cap needs: the whole text for a link, and how the last line is made."""

    lines: list[OutLine]
    #: the message as people read it (author, text, attachments), for the page behind a
    #: link; made only for a message over `max_lines` lines
    whole: str = ""
    #: the line a notice or link replaces the last shown line with (its body is replaced)
    tail: OutLine | None = None
    #: bytes of text that fit in that line after its head
    room: int = 0


class Renderer:
    """Turns a chanmux Message into OutLines by the plug's config."""

    def __init__(self, plug: str, config: IRCConfig, recall: Callable[[str], Said | None]) -> None:
        self.plug = plug
        self.config = config
        self.recall = recall

    # -- pieces ------------------------------------------------------------------------------

    def mention(self, seg: Segment) -> str:
        """A mentioned user as IRC shows them: their nick if they are on this network."""
        user = seg.mention
        if user is not None and user.plug == self.plug and user.username:
            return user.username
        return seg.text

    def name(self, user: object) -> str | None:
        """The author's display name, cleaned and shortened."""
        display = getattr(user, "display", None) if user is not None else None
        if not display:
            return None
        name = " ".join(clean(display).split())
        if len(name) > MAX_NAME:
            name = name[: MAX_NAME - 1] + "…"
        return name or None

    def _styled(self, name: str) -> str:
        if self.config.anti_highlight and len(name) > 1:
            name = name[0] + ZWSP + name[1:]
        return coloured(name) if self.config.nick_colours else name

    def author_head(self, msg: Message) -> str:
        """What is put before a relayed line to say who wrote it (`<Name> ` or `* Name `)."""
        name = self.name(msg.user)
        if msg.action:
            return self.config.action_format.format(name=self._styled(name)) if name else "* "
        return self.config.author_format.format(name=self._styled(name)) if name else ""

    def _old_text(self, msg: Message) -> RichText | None:
        earlier = msg.edit_of
        text = getattr(earlier, "text", None)
        if text is not None:
            return text
        if isinstance(earlier, Receipt):
            said = self.recall(earlier.id)
            return said.text if said else None
        return None

    def _edited(self, msg: Message, text: RichText) -> RichText | None:
        policy = self.config.edits
        if policy == "none":
            return None
        old = self._old_text(msg)
        if policy == "auto" and old is not None:
            correction = compact_correction(old.plain, text.plain)
            if correction is not None:
                return RichText.plain_text(correction)
        return RichText.plain_text(self.config.edit_marker) + text

    def _reply(self, msg: Message) -> RichText | None:
        parent = msg.reply_to
        if parent is None:
            return None
        name, text = None, getattr(parent, "text", None)
        user = getattr(parent, "user", None)
        if user is not None:
            name = user.username if user.plug == self.plug and user.username else self.name(user)
        if name is None or text is None:
            parent_id = getattr(parent, "id", None)
            said = self.recall(parent_id) if parent_id else None
            if said is not None:
                name = name or said.name
                text = text if text is not None else said.text
        if not name:
            return None
        return RichText.plain_text(f"{clean(name)}:{self._quote(text)} ")

    def _quote(self, text: RichText | None) -> str:
        """` "first words…"` of `text`, up to `reply_quote` characters (nothing at 0)."""
        limit = self.config.reply_quote
        if text is None or not limit:
            return ""
        plain = flat(text.plain)
        if not plain:
            return ""
        quote = plain if len(plain) <= limit else plain[: limit - 1].rstrip() + "…"
        return f' "{quote}"'

    def reaction(self, msg: Message, reacted: Said | None) -> RichText | None:
        """A reaction as a line of text: `* alice reacted 👍 to bob: "first words…"` (or
        `took back`), naming the message reacted to as far as it is remembered; None for a
        reaction without a key."""
        reaction = msg.reaction
        if reaction is None:
            return None
        key = flat(reaction.key)[:MAX_KEY]
        if not key:
            return None
        who = self.name(msg.user) or "someone"
        did = "took back" if reaction.removed else "reacted"
        to = ""
        if reacted is not None and reacted.name:
            to = f" to {clean(reacted.name)}"
            quote = self._quote(reacted.text)
            to += f":{quote}" if quote else ""
        return RichText.plain_text(f"* {who} {did} {key}{to}")

    def deletion(self, said: Said) -> RichText:
        """The notice that a message was deleted where IRC cannot delete it:
        `* a message from alice was deleted: "first words…"` (who deleted it is not known)."""
        who = f" from {clean(said.name)}" if said.name else ""
        quote = self._quote(said.text)
        return RichText.plain_text(f"* a message{who} was deleted{':' + quote if quote else ''}")

    def _attachments(self, msg: Message) -> list[RichText]:
        out: list[RichText] = []
        for item in msg.attachments:
            if isinstance(item, File):
                title = clean(item.title or "") or "file"
                out.append(RichText([Segment(title, link=item.url)]) if item.url
                           else RichText.plain_text(f"(file: {title})"))
            elif isinstance(item, Location):
                url = (f"https://www.openstreetmap.org/?mlat={item.latitude}&mlon={item.longitude}"
                       f"#map=16/{item.latitude}/{item.longitude}")
                label = clean(item.name or item.address or "location")
                out.append(RichText([Segment(label, link=url)]))
            elif isinstance(item, Message) and item.text:
                who = self.name(item.user)
                for line in item.text.lines():
                    out.append(RichText.plain_text(f"> {who}: " if who else "> ") + line)
        return out

    def _event(self, msg: Message) -> RichText | None:
        parts = []
        if msg.joined:
            parts.append(", ".join(filter(None, (self.name(u) for u in msg.joined))) + " joined")
        if msg.left:
            reason = flat(msg.reason or "")
            if len(reason) > MAX_REASON:
                reason = reason[: MAX_REASON - 1].rstrip() + "…"
            parts.append(", ".join(filter(None, (self.name(u) for u in msg.left))) + " left"
                         + (f" ({reason})" if reason else ""))
        if msg.renamed is not None:
            before, after = (self.name(u) for u in msg.renamed)
            if before and after and before != after:
                parts.append(f"{before} is now known as {after}")
        if msg.title is not None:
            who = self.name(msg.user)
            parts.append(f"{who + ' ' if who else ''}changed the title to: {clean(msg.title)}")
        text = "; ".join(p for p in parts if p.strip())
        return RichText.plain_text(text) if text else None

    # -- the whole message -------------------------------------------------------------------

    def lines(self, msg: Message, target: str, budget: Budget, *, puppet: bool = False) -> list[OutLine]:
        """The lines that say `msg` in `target` (none for an edit under the "none" policy),
        a longer message ending with the truncation notice."""
        return self.fit(self.render(msg, target, budget, puppet=puppet))

    def render(self, msg: Message, target: str, budget: Budget, *, puppet: bool = False) -> Rendering:
        """Every line that says `msg` in `target`, however many, and its whole text."""
        command = "NOTICE" if msg.notice else "PRIVMSG"
        text = msg.text or RichText()
        action = msg.action
        head = ""
        name = self.name(msg.user)
        if not text and msg.is_event:
            event = self._event(msg)
            if event is None:
                return Rendering([])
            rendering = self._split([event], target, command, "* " if not puppet else "",
                                    False, budget)
            if self.too_long(rendering):
                rendering.whole = self._plain(event) + "\n"
            return rendering
        if msg.edited and text:
            edited = self._edited(msg, text)
            if edited is None:
                return Rendering([])
            text = edited
        reply = self._reply(msg)
        if reply is not None:
            text = reply + text
        ctcp = False
        if puppet:
            ctcp = action
        elif action and self.config.actions == "ctcp":
            ctcp = True
            head = f"{self._styled(name)} " if name else ""
        elif action:
            head = self.config.action_format.format(name=self._styled(name)) if name else "* "
        elif name:
            head = self.config.author_format.format(name=self._styled(name))
        chunks = [line for line in text.lines() if line.plain.strip()]
        if not self.config.monospace:
            chunks = [without_monospace(line) for line in chunks]
        attachments = self._attachments(msg)
        rendering = self._split(chunks + attachments, target, command, head, ctcp, budget)
        if self.too_long(rendering):  # only then is the whole text needed
            rendering.whole = self._whole(msg, name, text, attachments)
        return rendering

    def _plain(self, text: RichText) -> str:
        """One line as IRC shows it, without formatting codes (links as `text <url>`)."""
        return "".join(shown(seg, self.mention) for seg in text.segments)

    def _whole(self, msg: Message, name: str | None, text: RichText,
               attachments: list[RichText]) -> str:
        """The message as a page shows it: the author as IRC shows them (uncoloured, and
        without the anti-highlight character, which only matters in an IRC client) before
        its first line, even for a puppet, so that a link passed on still says who wrote it;
        blank lines inside the text are kept."""
        lines = [self._plain(line) for line in text.lines()]
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        lines += [self._plain(item) for item in attachments]
        if msg.action:
            head = self.config.action_format.format(name=name) if name else "* "
        else:
            head = self.config.author_format.format(name=name) if name else ""
        return head + "\n".join(lines) + "\n"

    def _split(self, texts: list[RichText], target: str, command: str, head: str, ctcp: bool,
               budget: Budget) -> Rendering:
        encoding = self.config.encoding
        room = budget(command, ctcp) - len(head.encode(encoding, "replace"))
        if room < MIN_ROOM:
            head = ""
            room = budget(command, ctcp)
        out = [OutLine(target, command, head, chunk, ctcp)
               for line in texts for chunk in split(line, room, encoding, self.mention)]
        return Rendering(out, "", OutLine(target, command, head, RichText(), ctcp), room)

    def too_long(self, rendering: Rendering) -> bool:
        """True when the message takes more than `max_lines` lines."""
        return len(rendering.lines) > self.config.max_lines

    def fit(self, rendering: Rendering, link: str | None = None) -> list[OutLine]:
        """The lines to send: all of them within `max_lines`; else the first ones and, as the
        last, `link` (to the whole text) if given and it fits in one line, or a notice saying
        how many lines are not shown."""
        out, limit = rendering.lines, self.config.max_lines
        if len(out) <= limit:
            return out
        assert rendering.tail is not None
        size = measure(self.config.encoding, self.mention)
        bodies = [] if link is None else [
            RichText([Segment("(full message at <"), Segment(link, link=link), Segment(">)")]),
            RichText([Segment(link, link=link)])]
        for body in bodies:  # a link is only of use whole; a very long one may need the line
            if size(body) <= rendering.room:
                return out[: limit - 1] + [attrs.evolve(rendering.tail, body=body)]
        hidden = len(out) - (limit - 1)
        marker = RichText.plain_text(f"(message truncated: {hidden} more lines not shown)")
        return out[: limit - 1] + [attrs.evolve(rendering.tail, body=marker)]


__all__ = ["MAX_KEY", "MAX_NAME", "MIN_ROOM", "NEEDS", "RELAYMSG_CAP", "OutLine", "Renderer", "Rendering", "flat"]
