"""ForwardHook: copies messages one way, from source channels to destination channels."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from chanmux import (
    BatchWriter,
    Channel,
    ConfigError,
    Delivery,
    DeliveryQueues,
    Hook,
    Host,
    Message,
    Policies,
    Reaction,
    Receipt,
    RichText,
    SentMessage,
    codec,
    relayed_fields,
)

from . import store as store_mod
from .config import ForwardConfig

#: Where copies not delivered at a stop are kept (host state, by hook name).
QUEUED_STATE = "queued"

CopyKey = tuple[str, str, str]


class _Forwarded:
    """The copies of one forwarded message, by channel (oldest first), for its edits and deletes;
    `origin` is the original's key, under which its copies are stored."""

    __slots__ = ("copies", "deleted", "origin")

    def __init__(self, origin: CopyKey | None = None) -> None:
        self.copies: dict[Channel, list[str]] = {}
        self.deleted = False
        self.origin = origin


class ForwardHook(Hook):
    """Hook to propagate messages from a source channel to one or more destination channels.

    Only messages people said are forwarded: never a copy any hook put (the host's echoes), nor
    the bridge's own messages, so no configuration can loop. Edits and deletes of a forwarded
    message follow it: its copies are kept in the host database (`persist`), the last
    `cache_size` in memory too, so they follow it after a restart.

    `virtual` is True for a hook built by code rather than the config file (its config may
    name channels by `Channel` objects); it is then added with `host.add_hook`.
    """

    Config = ForwardConfig
    #: copies it put come back from the networks: never forwarded, so not needed
    echoes = False

    def __init__(self, name: str, config: ForwardConfig, host: Host, virtual: bool = False,
                 priority: int = 100) -> None:
        super().__init__(name, config, host, priority)
        self.virtual = virtual
        self._routes: dict[Channel, list[Channel]] = {}
        self._groups: list[tuple[frozenset[str], frozenset[Channel], list[Channel]]] = []
        self._users = frozenset(config.users) if config.users is not None else None
        self.policies = Policies(config, host)
        self._forwarded: OrderedDict[CopyKey, _Forwarded] = OrderedDict()
        self._copies: dict[CopyKey, _Forwarded] = {}
        self._size = max(1, config.cache_size)
        #: the delivery queue of each target channel (core's `DeliveryQueues`)
        self.queues = DeliveryQueues(host, name, self._execute, limit=config.retry_limit,
                                     max_age=config.retry_max_age, dump=self._dump,
                                     load=self._load, key=QUEUED_STATE)
        self.writer: BatchWriter[tuple[str, ...]] | None = (
            host.store.writer(f"{name}:copies", store_mod.write_rows) if config.persist else None)
        if virtual:
            self.on_load()

    # -- loading -----------------------------------------------------------------------------

    def _channel(self, ref: Any, path: str, issues: list[tuple[str, str]]) -> Channel | None:
        if isinstance(ref, Channel):
            return ref
        try:
            return self.host.channel(ref, path)
        except ConfigError as exc:
            issues.extend(exc.issues)
            return None

    def on_load(self) -> None:
        """Resolve channel names and check overrides; ConfigError listing every problem."""
        if self._routes or self._groups:
            return
        issues: list[tuple[str, str]] = []
        path = f"hooks.{self.name}"
        config = self.config
        if not config.channels and not config.groups:
            issues.append((path, "nothing to forward: give `channels` or `groups`"))
        for source, targets in config.channels.items():
            name = str(source)
            channel = self._channel(source, f"{path}.channels.{name}", issues)
            resolved = [self._channel(t, f"{path}.channels.{name}[{i}]", issues)
                        for i, t in enumerate(targets)]
            if channel is not None:
                found = self._routes.setdefault(channel, [])
                found.extend(t for t in resolved if t is not None and t != channel and t not in found)
        for group, entry in config.groups.items():
            where = f"{path}.groups.{group}"
            for i, plug in enumerate(entry.plugs):
                if plug not in self.host.plugs:
                    issues.append((f"{where}.plugs[{i}]", f'unknown plug "{plug}" '
                                   f"(plugs: {', '.join(sorted(self.host.plugs)) or 'none'})"))
            sources = [self._channel(c, f"{where}.channels[{i}]", issues)
                       for i, c in enumerate(entry.channels)]
            targets = [self._channel(t, f"{where}.to[{i}]", issues) for i, t in enumerate(entry.to)]
            if not entry.to:
                issues.append((f"{where}.to", "no destination channels"))
            self._groups.append((frozenset(entry.plugs), frozenset(c for c in sources if c),
                                 [t for t in targets if t is not None]))
        issues.extend(self.policies.problems(path, self.host.plugs))
        if config.cache_size < 1:
            issues.append((f"{path}.cache_size", "must be at least 1"))
        if config.retry_limit < 0:
            issues.append((f"{path}.retry_limit", "must be 0 (no limit) or more"))
        if issues:
            self._routes.clear()
            self._groups.clear()
            raise ConfigError(issues)
        for targets in [*self._routes.values(), *(g[2] for g in self._groups)]:
            for target in targets:
                self.queues.add(target)

    def links(self) -> dict[str, list[str]]:
        """Each source and where it is forwarded (`chanmux status`; called by chanmux>=0.2.2)."""
        label = self.host.channel_label
        out = {label(source): [label(t) for t in targets] for source, targets in self._routes.items()}
        for plugs, sources, targets in self._groups:
            name = ", ".join([*sorted(plugs), *sorted(label(c) for c in sources)])
            out[name] = [label(t) for t in targets]
        return out

    async def open(self) -> None:
        await self.queues.restore()
        self.queues.start()

    async def close(self) -> None:
        await self.queues.save()

    async def delivered(self, timeout: float = 30.0) -> None:
        """Wait until every copy handed over so far is delivered (or given up on), skipping
        channels whose plug is not ready."""
        await self.queues.wait_idle(timeout)

    def targets(self, channel: Channel) -> list[Channel]:
        """Destination channels for a message said in `channel` (never `channel` itself)."""
        found = list(self._routes.get(channel, ()))
        for plugs, sources, targets in self._groups:
            if channel.plug in plugs or channel in sources:
                found.extend(t for t in targets if t != channel and t not in found)
        return found

    # -- receiving ---------------------------------------------------------------------------

    async def on_receive(self, sent: SentMessage, source: Message, primary: bool) -> None:
        """Handle an incoming message received by any plug.

        `source` is the message `sent` is a copy of when a hook put it (else `sent` itself);
        such copies are never forwarded. `primary` is False for extra raw messages that
        represent one message.
        """
        if source is not sent:
            return
        key = sent.key
        if key in self._copies:
            return
        user = sent.user
        if user is not None and user.is_self:
            return
        targets = self.targets(sent.channel)
        if not targets:
            return
        if self._users is not None and (user is None or user.id not in self._users):
            return
        if sent.deleted or sent.edited:
            origin = key
            if sent.edited and sent.edit_of is not None and hasattr(sent.edit_of, "channel"):
                origin = sent.edit_of.key  # type: ignore[union-attr]
            entry = self._forwarded.get(origin) or self._forwarded.get(key)
            if entry is None:
                entry = await self._fetch(origin)
            if entry is not None:
                if sent.deleted:
                    await self._delete(entry)
                elif not entry.deleted:
                    await self._edit(sent, entry)
                return
            if sent.deleted:
                return
        if not (sent.text or sent.attachments or sent.is_event or sent.reaction is not None):
            return
        if getattr(sent, "replayed", False):  # received again after a restart
            entry = self._forwarded.get(key) or await self._fetch(key)
            if entry is not None:  # forwarded before: only where no copy is known
                targets = [t for t in targets if not entry.copies.get(t) and not (
                    t in self.queues.queues and self.queues[t].has(lambda d: d.ref is entry))]
                if not targets:
                    return
        await self.send(sent, targets)

    # -- sending -----------------------------------------------------------------------------

    async def send(self, msg: Message, channels: Iterable[Channel]) -> dict[Channel, list[Receipt]]:
        """Send a message to all channels in this forwarding group.

        `msg` is the external message to push; `channels` the set of target channels to
        forward it to. Returns the receipts of each channel reached.
        """
        key = msg.key if isinstance(msg, SentMessage) else None
        entry = self._forwarded.get(key) if key is not None else None
        if entry is None:
            entry = _Forwarded(key)
        parent = msg.reply_to
        if isinstance(parent, (Receipt, SentMessage)) and parent.key not in self._forwarded:
            await self._fetch(parent.key)  # a reply to a message forwarded before a restart
        if key is not None:
            self._remember(key, entry)
        context = await self._context(msg)
        results: dict[Channel, list[Receipt]] = {}
        origin = "|".join(key) if key is not None else None
        for channel in channels:
            local = self._render(msg, channel, context, edited=msg.edited)
            if local is None:
                continue
            queue = self.queues.add(channel)
            item = Delivery("put", local, entry, results, hold=self.host.hold(),
                            key=f"{self.name}|{origin}|put|{channel}" if origin else None)
            await queue.deliver(item)
        return results

    async def _edit(self, sent: SentMessage, entry: _Forwarded) -> None:
        context = await self._context(sent)
        revision = sent.revision or sent.id
        for channel, queue in self.queues.items():
            ids = entry.copies.get(channel)
            policy = self.policies.get(channel.plug)
            if not policy.edits:
                continue
            local = self._render(sent, channel, context, edited=True)
            if local is None:
                continue
            if not ids:
                queue.replace(lambda d: d.ref is entry and d.kind == "put", local)
                continue
            await queue.deliver(Delivery("edit", local, entry, hold=self.host.hold(),
                                         key=f"{self.name}|{'|'.join(entry.origin or ())}|edit|"
                                             f"{revision}|{channel}"))

    async def _delete(self, entry: _Forwarded) -> None:
        if entry.deleted:
            return
        entry.deleted = True
        for channel, queue in self.queues.items():
            queue.discard(lambda d: d.ref is entry and d.kind != "delete")
            ids = entry.copies.get(channel)
            plug = self.host.plugs.get(channel.plug)
            if not ids or plug is None or not plug.capabilities.delete \
                    or not self.policies.get(channel.plug).deletes:
                continue
            await queue.deliver(Delivery("delete", list(ids), entry, hold=self.host.hold(),
                                         key=f"{self.name}|{'|'.join(entry.origin or ())}|delete|"
                                             f"{channel}"))

    async def _context(self, msg: Message) -> dict[str, str]:
        channel: Channel | None = getattr(msg, "channel", None)
        if channel is None:
            return {"network": "", "plug": "", "channel": "", "label": ""}
        plug = self.host.plugs.get(channel.plug)
        title = channel.source
        if any(self.policies.get(c.plug).name.needs_channel for c in self.targets(channel)):
            try:
                title = await self.host.channel_title(channel) or channel.source
            except Exception:  # noqa: BLE001 - a failing look-up only costs the title
                title = channel.source
        return {"network": plug.network_name if plug is not None else channel.plug,
                "plug": channel.plug, "channel": title,
                "label": self.host.channel_name(channel) or channel.source}

    def _render(self, msg: Message, target: Channel, context: dict[str, str],
                edited: bool) -> Message | None:
        policy = self.policies.get(target.plug)
        fields = relayed_fields(msg, joins=policy.joins, renames=policy.renames)
        if fields is None:
            return None
        reaction = fields["reaction"]
        if reaction is not None:  # only to a message forwarded there, to its copy
            reacted = self._forwarded.get(reaction.target.key) if hasattr(reaction.target, "key") else None
            ids = reacted.copies.get(target) if reacted is not None else None
            if not ids:
                return None
            fields["reaction"] = Reaction(reaction.key, Receipt(id=ids[0], channel=target),
                                          reaction.removed)
        reply_to = msg.reply_to
        text = msg.text
        if reply_to is not None and getattr(reply_to, "channel", None) != target:
            parent = self._forwarded.get(reply_to.key) if hasattr(reply_to, "key") else None
            ids = parent.copies.get(target) if parent is not None else None
            if ids:
                reply_to = Receipt(id=ids[0], channel=target)
            else:
                quoted = getattr(reply_to, "text", None)
                user = getattr(reply_to, "user", None)
                author = user.display if user is not None else None
                line = " ".join(quoted.plain.split())[:120] if quoted else "(an earlier message)"
                prefix = f"> {author}: {line}\n" if author else f"> {line}\n"
                text = prefix + text if text else RichText.plain_text(prefix)
                reply_to = None
        return Message(text=text, user=policy.name.apply(msg.user, **context), action=msg.action,
                       notice=msg.notice, edited=edited, reply_to=reply_to,
                       attachments=msg.attachments, **fields)

    # -- memory of what was forwarded --------------------------------------------------------

    def _remember(self, key: CopyKey, entry: _Forwarded) -> None:
        self._forwarded[key] = entry
        if len(self._forwarded) > self._size:
            _, old = self._forwarded.popitem(last=False)
            for channel, ids in old.copies.items():
                for id_ in ids:
                    self._copies.pop((channel.plug, channel.source, id_), None)

    def _record(self, entry: _Forwarded, channel: Channel, receipts: list[Receipt]) -> None:
        found = entry.copies.setdefault(channel, [])
        writer, origin = self.writer, entry.origin
        for receipt in receipts:
            if receipt.id not in found:
                found.append(receipt.id)
                self._copies[(channel.plug, channel.source, receipt.id)] = entry
                if writer is not None and origin is not None:
                    writer.add((self.name, *origin, channel.plug, channel.source, receipt.id))

    async def _fetch(self, origin: CopyKey) -> _Forwarded | None:
        """The copies of a message forwarded before memory's horizon, from the database."""
        writer = self.writer
        if writer is None:
            return None
        if writer.pending:
            await writer.flush()
        found = await self.host.store.transaction(
            lambda conn: store_mod.read_copies(conn, self.name, origin))
        if not found:
            return None
        entry = _Forwarded(origin)
        entry.copies = found
        self._remember(origin, entry)
        for channel, ids in found.items():
            for id_ in ids:
                self._copies[(channel.plug, channel.source, id_)] = entry
        return entry

    # -- delivering --------------------------------------------------------------------------

    async def _execute(self, channel: Channel, item: Delivery) -> None:
        """Make one delivery (for the channel's delivery queue, which retries what will pass)."""
        entry: _Forwarded = item.ref
        if item.kind == "delete":
            while item.msg:
                await self.host.delete(Receipt(id=item.msg[0], channel=channel))
                item.msg.pop(0)
            return
        if entry.deleted:
            return
        if item.kind == "edit":
            ids = entry.copies.get(channel)
            if not ids:
                return
            plug = self.host.plugs.get(channel.plug)
            in_place = plug is not None and plug.capabilities.edit
            receipts = await self.host.edit(Receipt(id=ids[0] if in_place else ids[-1],
                                                    channel=channel), item.msg)
        else:
            receipts = await self.host.put(channel, item.msg)
            if isinstance(item.extra, dict):
                item.extra[channel] = receipts  # send()'s results, for copies delivered at once
        self._record(entry, channel, receipts)

    # -- copies not delivered at a stop --------------------------------------------------------

    def _dump(self, channel: Channel, item: Delivery) -> dict[str, Any]:
        entry: _Forwarded = item.ref
        return {"channel": [channel.plug, channel.source], "kind": item.kind,
                "origin": list(entry.origin) if entry.origin else None,
                "msg": item.msg if item.kind == "delete" else codec.dump(item.msg),
                "delivery": item.key, "since": item.since}

    async def _load(self, row: dict[str, Any]) -> tuple[Channel, Delivery]:
        origin = tuple(row["origin"]) if row.get("origin") else None
        entry = None
        if origin is not None:
            entry = self._forwarded.get(origin) or await self._fetch(origin)
        if entry is None:
            entry = _Forwarded(origin)
            if origin is not None:
                self._remember(origin, entry)
        msg = list(row["msg"]) if row["kind"] == "delete" else codec.load(row["msg"])
        return Channel(*row["channel"]), Delivery(row["kind"], msg, entry, key=row.get("delivery"),
                                                  since=row.get("since"))
