"""SyncHook: joins channels on any plugs into one conversation per label."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

from chanmux import (
    Channel,
    ConfigError,
    Delivery,
    DeliveryQueue,
    DeliveryQueues,
    Hook,
    Host,
    Message,
    NameFormat,
    Policies,
    Policy,
    Reaction,
    Receipt,
    RichText,
    Segment,
    SentMessage,
    User,
    codec,
    describe,
    relayed_fields,
)

from . import store as store_mod
from .cache import SyncCache, SyncRef
from .config import Overrides, SyncConfig
from .plug import SyncPlug

#: Where copies not delivered at a stop are kept (host state, by hook name).
QUEUED_STATE = "queued"


class Lineage:
    """The channels each copy a sync hook rendered already exists in, so that two syncs
    sharing channels (one's virtual SyncPlug channel a member of the other's label) never hand
    a message back and forth. Keyed by the Message object put, and gone with it: a SyncPlug's
    `put` hands the very object another sync rendered to its hook's `send`, which is why this
    map is shared by every sync hook in the process rather than owned by one."""

    _seen: weakref.WeakKeyDictionary[Message, frozenset[Channel]] = weakref.WeakKeyDictionary()
    #: True once a sync with a virtual plug exists: only through one can a copy reach another
    #: sync's `send` (until then no copy is marked, which costs a weak reference per copy)
    needed = False

    @classmethod
    def of(cls, msg: Message) -> frozenset[Channel] | None:
        """The channels `msg` (a copy some sync rendered) has been through, or None."""
        return cls._seen.get(msg)

    @classmethod
    def mark(cls, msg: Message, channels: frozenset[Channel]) -> None:
        cls._seen[msg] = channels


#: One copy `send` decided to hand over: (queue, delivery, pending): the delivery to the queue,
#: unless `pending` (an edit of a copy not sent yet) names the waiting put whose message the
#: delivery's replaces instead. A plain tuple: one is made per copy.
_Step = tuple[DeliveryQueue, Delivery, "Callable[[Delivery], bool] | None"]


def _content(msg: Message) -> bool:
    """True if `msg` has anything to relay."""
    return bool(msg.text or msg.attachments or msg.is_event or msg.reaction is not None)


#: Seconds between two "is typing" a relay passes on for one person to one channel (networks
#: repeat it every few seconds while someone types; a stop is always passed on).
TYPING_EVERY = 3.0


class _Context:
    """What every copy of one message shares: where it came from, its reply, and the message
    a reaction is to."""

    __slots__ = ("network", "plug", "title", "parent", "parent_ref", "reacted_ref", "names",
                 "quotes", "unresolved")

    def __init__(self, network: str, plug: str, title: str, parent: Any, parent_ref: SyncRef | None) -> None:
        self.network = network
        self.plug = plug
        self.title = title
        self.parent = parent
        self.parent_ref = parent_ref
        self.reacted_ref: SyncRef | None = None
        self.names: dict[NameFormat, User | None] = {}
        self.quotes: RichText | None = None
        #: something `SyncHook._resolve_context` must look up yet
        self.unresolved = False

    def context_names(self, label: str) -> dict[str, str]:
        return {"network": self.network, "plug": self.plug, "channel": self.title, "label": label}


class SyncHook(Hook):
    """Hook to propagate messages between two or more channels.

    Each label of the `channels` config links any number of channels; a message said in one
    appears once in each of the others. Edits, deletes and replies follow the message to its
    copies, also after a restart (the copies are kept in the host database).
    """

    Config = SyncConfig
    #: the networks' copies of what the sync put are its own copies: it needs none of them
    echoes = False

    def __init__(self, name: str, config: SyncConfig, host: Host, priority: int = 100) -> None:
        super().__init__(name, config, host, priority)
        self.cache = SyncCache(self)
        self.members: dict[str, list[Channel]] = {}
        self._labels: dict[Channel, str] = {}
        self.policies = Policies(config, host)
        #: (target channel, person) -> when "is typing" was last passed on (`on_typing`)
        self._typing: dict[tuple[Channel, str], float] = {}
        self._needs_title: dict[str, bool] = {}
        #: each label's member channels as a set, and each member's name (for delivery keys)
        self._member_set: dict[str, frozenset[Channel]] = {}
        #: each label's channels with what `_plan` needs of each: queue, policy, name in keys
        self._targets: dict[str, list[tuple[Channel, DeliveryQueue, Policy, str]]] = {}
        self._titles: dict[Channel, str] = {}
        #: the delivery queue of each member channel (core's `DeliveryQueues`)
        self.queues = DeliveryQueues(host, name, self._execute, limit=config.retry_limit,
                                     max_age=config.retry_max_age, dump=self._dump,
                                     load=self._load, key=QUEUED_STATE, merge=True)
        #: rows waiting for the database beyond which a message waits for them to be written
        #: (keeps memory flat when the database is slower than the chat)
        self.write_backlog = 20_000
        self._load_issues: list[tuple[str, str]] = []
        #: Virtual plug for this sync, if configured.
        self.plug: SyncPlug | None = None
        if config.plug:
            Lineage.needed = True
            try:
                self.plug = host.add_plug(SyncPlug(config.plug, self, host))  # type: ignore[assignment]
            except ConfigError as exc:
                self._load_issues.extend((f"hooks.{name}.plug", problem) for _, problem in exc.issues)
            else:
                for label in config.channels:
                    try:
                        host.add_channel(f"{config.plug}:{label}", Channel(config.plug, label))
                    except ConfigError as exc:
                        self._load_issues.extend((f"hooks.{name}.channels.{label}", problem)
                                                 for _, problem in exc.issues)

    @property
    def channels(self) -> dict[str, list[Channel]]:
        """Member channels of each label."""
        return self.members

    def label_for(self, channel: Channel) -> str | None:
        """The label `channel` belongs to, or None if this sync does not include it."""
        return self._labels.get(channel)

    # -- loading -----------------------------------------------------------------------------

    def on_load(self) -> None:
        """Perform any additional one-time setup that requires other plugs or hooks to be
        loaded: resolve channel names, check overrides and templates (ConfigError listing
        every problem), and set up the database writer."""
        issues = list(self._load_issues)
        path = f"hooks.{self.name}"
        config = self.config
        if not config.channels:
            issues.append((f"{path}.channels", "no labels: give at least one label with its channels"))
        for label, names in config.channels.items():
            chans: list[Channel] = []
            for index, name in enumerate(names):
                where = f"{path}.channels.{label}[{index}]"
                try:
                    channel = self.host.channel(name, where)
                except ConfigError as exc:
                    issues.extend(exc.issues)
                    continue
                other = self._labels.get(channel)
                if other is not None:
                    issues.append((where, f'channel "{name}" is already in label "{other}"'))
                    continue
                self._labels[channel] = label
                chans.append(channel)
            self.members[label] = chans
        for section in ("labels", "titles"):
            for label in getattr(config, section):
                if label not in config.channels:
                    issues.append((f"{path}.{section}.{label}", f'unknown label "{label}" '
                                   f"(labels: {', '.join(sorted(config.channels)) or 'none'})"))
        for key in ("cache_size", "quote_length"):
            if getattr(config, key) < 1:
                issues.append((f"{path}.{key}", "must be at least 1"))
        if config.retry_limit < 0:
            issues.append((f"{path}.retry_limit", "must be 0 (no limit) or more"))
        issues.extend(self.policies.problems(path, self.host.plugs))
        if issues:
            raise ConfigError(issues)
        for label, chans in self.members.items():
            needs = False
            for plug in {c.plug for c in chans} | set(self.host.plugs):
                policy = self.policies.get(plug, label)
                needs = needs or policy.name.needs_channel
            self._needs_title[label] = needs
        for label, chans in self.members.items():
            self._member_set[label] = frozenset(chans)
            for channel in chans:
                self.queues.add(channel)
            self._targets[label] = [(channel, self.queues[channel],
                                     self.policies.get(channel.plug, label), str(channel))
                                    for channel in chans]
        if config.persist:
            self.cache.writer = self.host.store.writer(f"sync:{self.name}", self.cache.write)

    def links(self) -> dict[str, list[str]]:
        """Each label and the channels it joins (`chanmux status`; called by chanmux>=0.2.2)."""
        return {label: list(names) for label, names in self.config.channels.items()}

    async def open(self) -> None:
        if self.cache.writer is not None:
            self.cache.stored_before = await self.host.store.transaction(
                lambda conn: store_mod.has_rows(conn, self.name))
            await self.queues.restore()
        self.queues.start()

    async def close(self) -> None:
        if self.cache.writer is not None:
            try:
                rescued = await self.cache.rescue()
            except Exception as exc:  # noqa: BLE001 - the database refuses: keep on closing
                self.log.error("%s: could not write the sync rows the batch writer had not "
                               "written (%s)", self.name, describe(exc))
            else:
                if rescued:
                    self.log.warning("%s: wrote %d sync rows the batch writer had not written",
                                     self.name, rescued)
            await self.queues.save()

    # -- copies not delivered at a stop --------------------------------------------------------

    def _dump(self, channel: Channel, item: Delivery) -> dict[str, Any]:
        """A waiting copy as it is kept at a stop (with what is known of its message's copies)."""
        ref = item.ref
        msg: Any = item.msg
        if item.kind != "delete":
            if item.extra is not None:  # resolve the reply now: the context is not kept
                self._attach_reply(channel, msg, item.extra)
                item.extra = None
            msg = codec.dump(msg)
        origin = ref.origin
        return {"channel": [channel.plug, channel.source], "kind": item.kind, "key": ref.key,
                "ids": [[c.plug, c.source, list(ids)] for c, ids in ref.ids.items()],
                "origin": [origin.channel.plug, origin.channel.source, origin.id] if origin else None,
                "deleted": ref.deleted, "msg": msg, "delivery": item.key, "since": item.since}

    async def _load(self, row: dict[str, Any]) -> tuple[Channel, Delivery]:
        """A copy kept at the last stop, with its SyncRef (from memory, the database, or the row)."""
        channel = Channel(*row["channel"])
        ref = self.cache.get(row["key"]) or await self.cache.fetch(row["key"])
        if ref is None:
            origin = row.get("origin")
            ref = self.cache.remember(SyncRef(
                {Channel(p, src): ids for p, src, ids in row["ids"]}, key=row["key"],
                origin=Receipt(id=origin[2], channel=Channel(origin[0], origin[1]))
                if origin else None))
        ref.deleted = ref.deleted or bool(row.get("deleted"))
        msg = row["msg"] if row["kind"] == "delete" else codec.load(row["msg"])
        return channel, Delivery(row["kind"], msg, ref, key=row.get("delivery"),
                                 since=row.get("since"))

    # -- receiving ---------------------------------------------------------------------------

    async def on_receive(self, sent: SentMessage, source: Message, primary: bool) -> None:
        """Handle an incoming message received by any plug.

        `source` is the message `sent` is a copy of when a hook put it (else `sent` itself);
        `primary` is False for extra raw messages representing one message.
        """
        channel = sent.channel
        label = self._labels.get(channel)
        if label is None:
            return
        cache = self.cache
        key = (channel.plug, channel.source, sent.id)
        ref = cache.lookup(key)
        if ref is None and sent.edited and sent.edit_of is not None and hasattr(sent.edit_of, "channel"):
            edit_of = sent.edit_of
            key = (edit_of.channel.plug, edit_of.channel.source, edit_of.id)  # type: ignore[union-attr]
            ref = cache.lookup(key) or await cache.fetch(edit_of)  # type: ignore[arg-type]
        replayed = getattr(sent, "replayed", False)
        if ref is None and cache.may_miss and (
                sent.edited or sent.deleted or source is not sent or replayed
                or (sent.user is not None and sent.user.is_self)):
            ref = await cache.fetch(sent)
        if ref is not None:
            if not ref.is_origin(key):
                return  # one of our copies (an echo, or its edit or delete)
            origin = ref.source
            reaction = origin.reaction if origin is not None else None
            if sent.deleted and origin is not None and reaction is not None and not reaction.removed:
                # a reaction taken back by deleting it (a Matrix redaction): its copies are
                # taken back the way each network does it
                removal = Message(user=origin.user, reaction=Reaction(
                    reaction.key, reaction.target, removed=True))
                await self.send(label, removal, sent)
            elif sent.deleted:
                await self.remove(label, ref)
            elif sent.edited and not ref.deleted:
                if ref.origin is not None and sent.id not in ref.ids.get(channel, ()):
                    cache.record(ref, channel, [Receipt(id=sent.id, channel=channel)])
                await self.send(label, source, sent, ref, update=True)
            elif replayed:  # received again after a restart: only where no copy is known
                await self.send(label, source, sent, ref)
            return
        if sent.deleted:
            return
        if not _content(source):
            self.log.debug("not syncing %s: nothing to relay", sent.key)
            return
        await self.send(label, source, sent)

    async def on_typing(self, channel: Channel, user: User, active: bool) -> None:
        """Someone types in a linked channel: the other channels of its label show it, as
        the person is named there; "is typing" at most every `TYPING_EVERY` seconds per
        person and channel, a stop always (when a start was passed on)."""
        label = self._labels.get(channel)
        if label is None:
            return
        person = user.id or user.username or user.display
        now = time.monotonic()
        plug = self.host.plugs.get(channel.plug)
        context = _Context(plug.network_name if plug is not None else channel.plug,
                           channel.plug, channel.source, None, None)
        for target in self.members[label]:
            if target == channel:
                continue
            key = (target, person)
            last = self._typing.get(key)
            if active:
                if last is not None and now - last < TYPING_EVERY:
                    continue
                self._typing[key] = now
            elif last is None:
                continue
            else:
                del self._typing[key]
            name = self.policies.get(target.plug, label).name
            await self.host.typing(target, name.apply(user, **context.context_names(label)) or user,
                                   active)
        while len(self._typing) > 10_000:  # people who never said they stopped
            self._typing.pop(next(iter(self._typing)))

    # -- sending -----------------------------------------------------------------------------

    async def send(self, label: str, msg: Message, origin: Receipt | SentMessage | None = None,
                   ref: SyncRef | None = None, update: bool = False, *,
                   virtual_source: Message | None = None) -> SyncRef:
        """Send a message to all channels in this synced group.

        `label` names the group; `msg` is the message to push (the source copy when syncing a
        message from another channel); `origin` the raw message that triggered this sync, whose
        channel is skipped; `ref` an existing sync reference if the message was partially
        synced (only channels without a copy get one); `update` True to resend an updated
        message to every channel (edits). Returns the message's SyncRef once every copy is
        handed to the delivery queue of its channel (`delivered()` waits for them to arrive).
        """
        fresh = ref is None  # (no copy of it can be on its way yet: see below)
        if ref is None:
            ref = self.cache.remember(SyncRef({}, source=msg, origin=origin))  # type: ignore[arg-type]
        elif update:
            ref.source = msg
            self.cache.edited(ref)  # a reply after a restart quotes the text as it is now
        context = self._context(label, msg, origin)
        if context.unresolved:  # a title to look up, or a parent's copies to find
            await self._resolve_context(label, context, msg, origin)
            fresh = False  # (others ran meanwhile: one may have queued a copy of it)
        if origin is None and ref.origin is not None:
            origin = ref.origin
        await self._dispatch(self._plan(label, msg, origin, ref, update, context, fresh))
        if self.plug is not None:
            self._mirror(label, ref, msg, context, virtual_source, edited=update)
        writer = self.cache.writer
        if writer is not None and writer.pending > self.write_backlog:
            await writer.flush()
        return ref

    def _plan(self, label: str, msg: Message, origin: Receipt | SentMessage | None, ref: SyncRef,
              update: bool, context: _Context, fresh: bool = False) -> list[_Step]:
        """What `send` hands to which channel's queue: a put for each member channel without
        a copy, or (`update`) an edit of each copy, under each target's policy. Skipped: the
        origin's channel, the channels the message has already been through (`Lineage`), a
        copy the target's policy does not edit, and a render that says nothing. Decides only;
        `_dispatch` acts. `fresh`: `ref` was made by this `send` with no await since, so no
        queue holds a copy of it (a queue backed up by an outage is not searched for one per
        message)."""
        origin_channel = origin.channel if origin is not None else None
        seen = Lineage.of(msg) if msg is not origin else None
        lineage: frozenset[Channel] | None = None
        if Lineage.needed:
            lineage = self._member_set.get(label) or frozenset(self.members[label])
            lineage = lineage.union(seen or (), (origin_channel,) if origin_channel else ())
        parent = context if context.parent is not None else None
        # delivery keys name the original message, not this run's SyncRef: a message handed
        # over again after a crash gets the same keys (and Matrix the same transaction ids)
        named = ref.origin or origin
        if isinstance(named, (Receipt, SentMessage)):
            where = named.channel
            base = f"{self.name}|{where.plug}:{where.source}|{named.id}"
        else:
            base = f"{self.name}|{ref.key}"
        if update:
            revision = getattr(origin, "revision", None) or getattr(origin, "id", None) or ""
            base = f"{base}|edit|{revision}|"
        else:
            base += "|put|"
        ids_of = ref.ids
        steps: list[_Step] = []
        for channel, queue, policy, name in self._targets[label]:
            if channel == origin_channel or (seen is not None and channel in seen):
                continue
            ids = ids_of.get(channel)
            if update:
                if (ids or not queue.idle) and not policy.edits:
                    continue
                kind = "edit"
            elif not ids and (fresh or queue.idle or not queue.has(lambda d: d.ref is ref)):
                kind = "put"
            else:
                continue  # a copy exists, or is on its way
            local = self._render(label, msg, channel, policy, context, update)
            if local is None:
                continue
            if lineage is not None:
                Lineage.mark(local, lineage)
            pending = (lambda d: d.ref is ref and d.kind == "put") if update and not ids else None
            steps.append((queue, Delivery(kind, local, ref, parent, key=base + name), pending))
        return steps

    async def _dispatch(self, steps: list[_Step]) -> None:
        """Hand each planned copy over: queued ones first (each queue sends in its own task),
        then those of quick queues, delivered here in order."""
        inline: list[tuple[DeliveryQueue, Delivery]] = []
        for queue, item, pending in steps:
            if pending is not None and queue.replace(pending, item.msg):
                continue  # the waiting put now carries the edited text
            item.hold = self.host.hold()  # only for what is really handed over
            if queue.quick:
                inline.append((queue, item))
            else:
                await queue.send(item)
        for queue, item in inline:
            await queue.deliver(item)

    async def remove(self, label: str, ref: SyncRef) -> None:
        """Delete every copy of `ref` (every revision, in every channel) except the original;
        copies still waiting to be delivered are dropped."""
        if ref.deleted:
            return
        ref.deleted = True
        origin = ref.origin.channel if ref.origin is not None else None
        for channel in self.members[label]:
            if channel == origin:
                continue
            plug = self.host.plugs.get(channel.plug)
            if plug is None or not plug.capabilities.delete:
                continue
            if not self.policies.get(channel.plug, label).deletes:
                continue
            queue = self.queues[channel]
            if ref.ids.get(channel) or not queue.idle:
                await queue.deliver(Delivery("delete", None, ref, hold=self.host.hold(),
                                             key=f"{ref.key}|delete|{channel}"))
        if self.plug is not None:
            self.plug.queue(SentMessage(id=ref.key, channel=Channel(self.plug.name, label),
                                        deleted=True))

    async def delivered(self, timeout: float = 30.0) -> None:
        """Wait until every copy queued so far has been delivered (or given up on)."""
        await self.queues.wait_idle(timeout)

    async def _execute(self, channel: Channel, item: Delivery) -> None:
        """Make one delivery (for the channel's delivery queue, which retries what will pass)."""
        ref = item.ref
        if item.kind == "delete":
            if item.msg is None:
                item.msg = list(ref.ids.get(channel, ()))
            while item.msg:
                await self.host.delete(Receipt(id=item.msg[0], channel=channel))
                item.msg.pop(0)
            return
        if ref.deleted:
            return
        msg = item.msg
        if item.extra is not None:
            self._attach_reply(channel, msg, item.extra)
            item.extra = None
        ids = ref.ids.get(channel)
        if item.kind == "edit" and ids:
            plug = self.host.plugs.get(channel.plug)
            in_place = plug is not None and plug.capabilities.edit
            receipts = await self.host.edit(Receipt(id=ids[0] if in_place else ids[-1],
                                                    channel=channel), msg)
        else:
            receipts = await self.host.put(channel, msg)
        self.cache.record(ref, channel, receipts)
        for line in item.merged:  # lines sent as part of this copy: replies find it from each
            self.cache.record(line.ref, channel, receipts)

    # -- building copies ---------------------------------------------------------------------

    def _context(self, label: str, msg: Message, origin: Any) -> _Context:
        """What the copies of `msg` say of where it came from; `unresolved` when
        `_resolve_context` must look something up first (most messages need not: no await)."""
        source_channel: Channel | None = getattr(origin, "channel", None)
        if source_channel is not None:
            plug = self.host.plugs.get(source_channel.plug)
            network = plug.network_name if plug is not None else source_channel.plug
            context = _Context(network, source_channel.plug, source_channel.source, msg.reply_to,
                               None)
            context.unresolved = self._needs_title[label]
        else:
            name = self.plug.name if self.plug is not None else self.name
            context = _Context(SyncPlug.network_name, name, label, msg.reply_to, None)
        if isinstance(msg.reply_to, (Receipt, SentMessage)):
            context.unresolved = True
        reaction = msg.reaction
        if reaction is not None and isinstance(reaction.target, (Receipt, SentMessage)):
            context.unresolved = True
        return context

    async def _resolve_context(self, label: str, context: _Context, msg: Message,
                               origin: Any) -> None:
        """Look up what `_context` left `unresolved`: the source channel's title (where a
        name format shows it) and the sync references of the parent and of a reaction's
        target."""
        source_channel: Channel | None = getattr(origin, "channel", None)
        if source_channel is not None and self._needs_title[label]:
            context.title = await self._title(source_channel, msg)
        parent = msg.reply_to
        if isinstance(parent, (Receipt, SentMessage)):
            context.parent_ref = await self.cache.fetch(parent)
        reacted = msg.reaction.target if msg.reaction is not None else None
        if isinstance(reacted, (Receipt, SentMessage)):
            context.reacted_ref = await self.cache.fetch(reacted)
        context.unresolved = False

    async def _title(self, channel: Channel, msg: Message) -> str:
        if msg.title is not None:
            self._titles[channel] = msg.title
        title = self._titles.get(channel)
        if title is None:
            try:
                title = await self.host.channel_title(channel)
            except Exception as exc:  # noqa: BLE001 - a failing look-up only costs the title
                self.log.debug("title of %s unavailable: %s", channel, exc)
            title = title or channel.source
            self._titles[channel] = title
        return title

    def _render(self, label: str, msg: Message, target: Channel, policy: Policy, context: _Context,
                edited: bool) -> Message | None:
        names = context.names
        if policy.name in names:
            user = names[policy.name]
        else:
            user = names[policy.name] = policy.name.apply(msg.user, **context.context_names(label))
        if (msg.text or msg.attachments) and not (
                msg.joined or msg.left or msg.renamed or msg.title is not None
                or msg.reaction is not None):
            # something said, and nothing else: what `relayed_fields` gives it under any policy
            return Message(text=msg.text, user=user, action=msg.action, notice=msg.notice,
                           edited=edited or msg.edited, attachments=msg.attachments)
        fields = relayed_fields(msg, joins=policy.joins, renames=policy.renames)
        if fields is None:
            return None
        if fields["joined"] or fields["left"] or fields["renamed"]:
            # the people a membership notice names are shown as authors are (and, where names
            # notify, kept from pinging anyone: `no_highlight`)
            def named(person: User) -> User:
                return policy.name.apply(person, **context.context_names(label)) or person

            fields["joined"] = [named(u) for u in fields["joined"]]
            fields["left"] = [named(u) for u in fields["left"]]
            if fields["renamed"] is not None:
                fields["renamed"] = (named(fields["renamed"][0]), named(fields["renamed"][1]))
        reaction = fields["reaction"]
        if reaction is not None:
            # a reaction goes to the target channel's own copy of the message it is to
            ids = context.reacted_ref.ids.get(target) if context.reacted_ref is not None else None
            if not ids:
                return None
            fields["reaction"] = Reaction(reaction.key, Receipt(id=ids[0], channel=target),
                                          reaction.removed)
        return Message(text=msg.text, user=user, action=msg.action, notice=msg.notice,
                       edited=edited or msg.edited, attachments=msg.attachments, **fields)

    def _attach_reply(self, target: Channel, msg: Message, context: _Context) -> None:
        """Point `msg` at the target channel's own copy of its parent, or quote the parent."""
        reply_to = self._reply_for(target, context)
        if reply_to is not None:
            msg.reply_to = reply_to
            return
        quote = context.quotes
        if quote is None:
            quote = context.quotes = self._quote(context)
        msg.text = quote + msg.text if msg.text else quote

    def _reply_for(self, target: Channel, context: _Context) -> SentMessage | None:
        """The target channel's own copy of the parent, with what we know of its content."""
        ref = context.parent_ref
        if ref is None or ref.deleted:
            return None
        ids = ref.ids.get(target)
        if not ids:
            return None
        author, excerpt = ref.quote(self.config.quote_length)
        source = ref.source
        if source is not None:
            return SentMessage(id=ids[0], channel=target, text=source.text, user=source.user)
        return SentMessage(id=ids[0], channel=target, text=excerpt,
                           user=User(real_name=author) if author else None)

    def _quote(self, context: _Context) -> RichText:
        """A quote of the parent, for channels its copy never reached."""
        author = excerpt = None
        if context.parent_ref is not None:
            author, excerpt = context.parent_ref.quote(self.config.quote_length)
        parent = context.parent
        if excerpt is None and getattr(parent, "text", None):
            excerpt = " ".join(parent.text.plain.split())[: self.config.quote_length]
        if author is None and getattr(parent, "user", None) is not None:
            author = parent.user.display
        line = f"{author}: {excerpt}" if author and excerpt else excerpt or (
            f"{author}: (an earlier message)" if author else "(an earlier message)")
        return RichText([Segment(f"> {line}", italic=True), Segment("\n")])

    def _mirror(self, label: str, ref: SyncRef, msg: Message, context: _Context,
                virtual_source: Message | None, edited: bool) -> None:
        """Receive the message in the virtual channel of its label."""
        assert self.plug is not None
        channel = Channel(self.plug.name, label)
        reply_to = None
        if context.parent_ref is not None:
            reply_to = Receipt(id=context.parent_ref.key, channel=channel)
        self.plug.queue(SentMessage(
            id=ref.key, channel=channel, text=msg.text, user=msg.user, action=msg.action,
            notice=msg.notice, edited=edited or msg.edited, reply_to=reply_to, joined=msg.joined,
            left=msg.left, renamed=msg.renamed, title=msg.title, attachments=msg.attachments),
            virtual_source)

__all__ = ["Overrides", "SyncConfig", "SyncHook"]
