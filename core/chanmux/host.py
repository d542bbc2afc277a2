"""The host: builds plugs and hooks from the config, runs them, and routes messages.

Messages received by plugs go through per-channel lanes (a channel always uses the same lane,
so its messages are handled in order; different channels run concurrently), then through
``before_receive`` and ``on_receive``. Puts go through ``before_put`` to the plug owning the
channel. Each plug runs under a supervisor that reconnects it with backoff and jitter when its
connection fails; the others keep working.
"""

from __future__ import annotations

import gc
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import sqlalchemy as sa
from anyio.abc import TaskGroup

from . import delivery
from .caller import HookCaller, NoOwner
from .config import Config, ConfigError, HostConfig
from .delivery import Hold
from .errors import ActionRequired, cause, describe
from .http import HTTPError, Listener, Request, Response, Route, Router
from .inbox import Inbox
from .journal import metadata as journal_metadata
from .lanes import Lanes
from .links import PRUNE_EVERY, Links
from .membership import foldable
from .metrics import Metrics, Traffic, failure_reason
from .model import Channel, Message, Receipt, SentMessage, User
from .plug import Hook, Plug, State
from .registry import LoadError, Registry, misspelt_specs
from .store import Store
from .watchdog import LoopWatchdog

if TYPE_CHECKING:
    from .queue import DeliveryQueues

log = logging.getLogger("chanmux.host")

#: Seconds a stop waits, at most, for copies on their way to arrive (`Host.settle`).
SETTLE = 5.0



def raise_gc_threshold(threshold: int) -> None:
    """Let the garbage collector's youngest generation take `threshold` allocations (net of
    those freed) before it collects, where it takes fewer (`[host] gc_threshold`; 0: leave
    it). Most of a relayed message's objects are freed as soon as it is delivered; with
    hundreds of messages on their way, Python's default collects them again and again."""
    first, *older = gc.get_threshold()
    if threshold > first:
        gc.set_threshold(threshold, *older)
        log.debug("garbage collector: first threshold raised from %d to %d", first, threshold)

class HostStopped(RuntimeError):
    """The host is not running (not started yet, or stopped): nothing can be received."""


class ListenError(OSError):
    """`[http] listen` cannot be opened (the port is in use, not permitted): one line."""


def _links(hook: Hook) -> dict[str, list[str]]:
    try:
        return {str(k): [str(c) for c in v] for k, v in hook.links().items()}
    except Exception as exc:  # noqa: BLE001 - one hook's bug never breaks status or a stop
        log.debug("%s: links() failed: %s", hook.name, describe(exc))
        return {}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class _Inflight:
    """Puts under way per channel, so an echo that overtakes its put's reply waits for it.

    An echo waits only for the puts that had started when it arrived (it can only be the copy
    of one of those), never for puts started after it: under steady traffic into a channel
    there may always be one under way.
    """

    def __init__(self) -> None:
        self.active: dict[Channel, set[int]] = {}
        self.changed: dict[Channel, anyio.Event] = {}
        self._seq = 0

    def __contains__(self, channel: Channel) -> bool:
        return channel in self.active

    def enter(self, channel: Channel) -> int:
        self._seq += 1
        active = self.active.get(channel)
        if active is None:
            active = self.active[channel] = set()
        active.add(self._seq)
        return self._seq

    def leave(self, channel: Channel, seq: int) -> None:
        active = self.active[channel]
        active.discard(seq)
        if not active:
            del self.active[channel]
        event = self.changed.pop(channel, None)  # made only when an echo waits (the rare case)
        if event is not None:
            event.set()

    async def settle(self, channel: Channel) -> None:
        """Wait until every put to `channel` under way now has finished."""
        started = self._seq
        while (active := self.active.get(channel)) and min(active) <= started:
            event = self.changed.get(channel)
            if event is None:
                event = self.changed[channel] = anyio.Event()
            await event.wait()


class Host:
    """Loads plugs and hooks, owns the database and the lifecycle, routes messages."""

    def __init__(self, config: Config, registry: Registry) -> None:
        self.config = config
        self.settings: HostConfig = config.host
        self.registry = registry
        self.pm = registry.pm
        self.caller = HookCaller(self.pm, timeout=self.settings.hook_timeout)
        self.store = Store(config.database_url(), echo=config.database.echo)
        self.inbox = Inbox(self.store)
        self.plugs: dict[str, Plug] = {}
        self.hooks: dict[str, Hook] = {}
        self.channels: dict[str, Channel] = {
            name: Channel(c.plug, c.source) for name, c in config.channels.items()}
        self._echoes: OrderedDict[tuple[str, str, str], Message] = OrderedDict()
        self._echo_listeners: bool | None = None  # see _echoes_heard
        self._inflight = _Inflight()
        self.lanes = Lanes(self.settings.lanes, self.settings.hook_timeout, self.caller.impls,
                           self._resolve_source, resolve_timeout=self.settings.put_timeout,
                           resolve_now=self._source_now)
        self._tg: TaskGroup | None = None
        self._ready: dict[str, anyio.Event] = {}
        self._changed: dict[str, anyio.Event] = {}  # set (and replaced) at each state change
        self._connections: dict[str, int] = {}  # times each plug has become active
        self._since: dict[str, float] = {}  # when each plug entered its state (Unix time)
        self.metrics = Metrics()
        #: every relay hook's delivery queues (each DeliveryQueues adds itself), for metrics
        #: and status
        self.delivery_queues: list[DeliveryQueues] = []
        self._labels: dict[Channel, str] = {}
        self._traffic = self.metrics.traffic  # per channel: counts and when last (metrics.py)
        self.http: Listener | None = None
        self.watchdog: LoopWatchdog | None = None
        self.links = Links(self)
        self.running = False
        self.stopped = anyio.Event()
        self._build()

    # -- construction ------------------------------------------------------------------------

    def _build(self) -> None:
        issues: list[tuple[str, str]] = []
        for name, entry in self.config.plugs.items():
            if not entry.enabled:
                continue
            cls = self.registry.plug_types[entry.type]
            self.add_plug(cls(name, entry.config, self))
        for name, entry in self.config.hooks.items():
            if not entry.enabled:
                continue
            cls = self.registry.hook_types[entry.type]
            if name in self.plugs:
                issues.append((f"hooks.{name}", f'the name "{name}" is already used by a plug'))
                continue
            self.add_hook(cls(name, entry.config, self, priority=entry.priority))
        components: list[tuple[str, Plug | Hook]] = [
            *((f"plugs.{name}", plug) for name, plug in self.plugs.items()),
            *((f"hooks.{name}", hook) for name, hook in self.hooks.items())]
        for where, component in components:
            try:
                component.on_load()
            except ConfigError as exc:
                issues.extend(exc.issues)
            except Exception as exc:  # noqa: BLE001 - one plug or hook failing to load is reported
                issues.append((where, f"failed to load: {type(exc).__name__}: {exc}"))
        pending = self.registry.check_pending()
        if pending:
            raise LoadError("; ".join(pending))
        if issues:
            raise ConfigError(issues, str(self.config.path) if self.config.path else None)

    def add_plug(self, plug: Plug) -> Plug:
        """Register a plug instance (built from the config, or virtual, made by a hook)."""
        if plug.name in self.plugs or plug.name in self.hooks:
            raise ConfigError([(f"plugs.{plug.name}", f'two plugs or hooks are named "{plug.name}"')])
        self.plugs[plug.name] = plug
        self.pm.register(plug, name=plug.name)
        self._warn_misspelt(plug, f"plugs.{plug.name}")
        self.caller.invalidate()
        self._ready[plug.name] = anyio.Event()
        self._changed[plug.name] = anyio.Event()
        self._connections[plug.name] = 0
        self._since[plug.name] = time.time()
        return plug

    def add_hook(self, hook: Hook) -> Hook:
        if hook.name in self.plugs or hook.name in self.hooks:
            raise ConfigError([(f"hooks.{hook.name}", f'two plugs or hooks are named "{hook.name}"')])
        self.hooks[hook.name] = hook
        self._echo_listeners = None
        self.pm.register(hook, name=hook.name)
        self._warn_misspelt(hook, f"hooks.{hook.name}")
        self.caller.invalidate()
        return hook

    @staticmethod
    def _warn_misspelt(component: Plug | Hook, where: str) -> None:
        for method, spec in misspelt_specs(component):
            log.warning("%s: %s.%s is not a chanmux hook specification, so it is never called; "
                        "did you mean %s?", where, type(component).__name__, method, spec)

    def add_channel(self, name: str, channel: Channel) -> Channel:
        """Name a channel, as `[channels]` does (a hook naming its virtual plug's channels);
        ConfigError if the name is taken by another channel."""
        known = self.channels.get(name)
        if known is not None and known != channel:
            raise ConfigError([(f"channels.{name}", f'the name "{name}" is taken by {known}')])
        self.channels[name] = channel
        self._labels.clear()
        return channel

    def channel(self, name: str, path: str | None = None) -> Channel:
        """A configured channel by its name in `[channels]`; ConfigError (at `path`) if unknown."""
        try:
            return self.channels[name]
        except KeyError:
            known = ", ".join(sorted(self.channels)) or "none configured"
            raise ConfigError([(path or "channels", f'unknown channel "{name}" (channels: {known})')]) from None

    def channel_name(self, channel: Channel) -> str | None:
        """The config name of a channel, if it is a configured one."""
        for name, chan in self.channels.items():
            if chan == channel:
                return name
        return None

    def channel_label(self, channel: Channel) -> str:
        """The channel's config name, or `plug:source` for one the config does not name (a
        direct chat): how metrics and status show it."""
        label = self._labels.get(channel)
        if label is None:
            if not self._labels:
                self._labels = {chan: name for name, chan in self.channels.items()}
            label = self._labels.get(channel) or f"{channel.plug}:{channel.source}"
            if len(self._labels) < 10_000:
                self._labels[channel] = label
        return label

    # -- lifecycle ---------------------------------------------------------------------------

    @asynccontextmanager
    async def running_context(self, wait_ready: float | None = 30.0) -> AsyncIterator[Host]:
        """Run the host inside the block; leaving it closes hooks, then plugs, then the store."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.run)
            if wait_ready:
                await self.wait_ready(wait_ready)
            try:
                yield self
                await self.settle()
            finally:
                tg.cancel_scope.cancel()

    def metadatas(self) -> list[sa.MetaData]:
        """The tables of every loaded package (core's first), as `chanmux_metadata` gives them."""
        found = [md for md in self.pm.hook.chanmux_metadata() if md is not None]
        return [journal_metadata, *found]

    def check_schema(self) -> str | None:
        """Why the loaded packages cannot use the database as it is, found without changing
        it (a newer release of one wrote it); None if nothing. Blocking; connects to a
        database server (a SQLite file that does not exist yet is fine)."""
        return self.store.check_schema(self.metadatas())

    async def run(self, *, task_status: anyio.abc.TaskStatus[Host] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; report started once hooks are open and plugs are starting.
        The event-loop watchdog (`[host] loop_block_warning`) watches all of it, the start
        and the stop included."""
        raise_gc_threshold(self.settings.gc_threshold)
        watchdog = self.watchdog = LoopWatchdog(self.settings.loop_block_warning)
        watchdog.on_lag = self.metrics.observe_lag
        failure: Exception | None = None
        async with anyio.create_task_group() as outer:
            await outer.start(watchdog.run, name="watchdog")
            try:
                await self._run(task_status)
            except Exception as exc:  # noqa: BLE001 - raised as it is, not in the watchdog's group
                failure = exc
            finally:
                outer.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _run(self, task_status: anyio.abc.TaskStatus[Host]) -> None:
        await self.store.run(self.store.create, self.metadatas())
        log.info("database %s ready", self.store.describe())
        if self.config.http.listen:
            await self.links.start()
        try:
            socket = await self._bind()
        except ListenError:
            await self.store.run(self.store.dispose)
            raise
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for writer in self.store.writers:
                    tg.start_soon(writer.run, name=f"writer:{writer.name}")
                await tg.start(self.lanes.run)
                for hook in sorted(self.hooks.values(), key=lambda h: h.priority):
                    await self._open_hook(hook)
                await self._replay()
                if socket is not None:
                    await self._serve(tg, socket)
                    socket = None
                for plug in self.plugs.values():
                    tg.start_soon(self._supervise, plug, name=f"plug:{plug.name}")
                self.running = True
                task_status.started(self)
                await anyio.sleep_forever()
        finally:
            self.running = False
            with anyio.CancelScope(shield=True):
                if socket is not None:
                    await socket.aclose()
                await self._shutdown()

    # -- the HTTP listener -------------------------------------------------------------------

    async def _bind(self) -> Any:
        """Open `[http] listen` before anything starts, so a port in use is said at once."""
        listen = self.config.http.listen
        if not listen:
            return None
        from .config import listen_address

        address, port = listen_address(listen)
        self.http = Listener(Router(), address, port)
        try:
            return await self.http.bind()
        except OSError as exc:
            raise ListenError(f"http.listen: cannot listen on {listen}: "
                              f"{exc.strerror or exc}") from None

    async def _serve(self, tg: TaskGroup, socket: Any) -> None:
        assert self.http is not None
        token = self.config.http.token
        router = self.http.router
        router.add(Route("GET", "/health", self._health_route))
        router.add(Route("GET", "/metrics", self._metrics_route, secret=token))
        router.add(Route("GET", "/status", self._status_route, secret=token))
        router.refusal = self.links.refusal
        if self.links.enabled:
            router.add(Route("GET", "/text/{key}", self.links.serve_text, signed=True))
            tg.start_soon(self._prune_links, name="links:prune")
        for owner, routes in await self.caller.fanout("http_routes"):
            for route in routes or ():
                try:
                    router.add(route)
                except ValueError as exc:
                    log.error("%s: route not served: %s", owner, exc)
        tg.start_soon(self.http.serve, socket, name="http")
        log.info("http: listening on %s (/health, /metrics, /status%s)", self.http.url,
                 "".join(f", {r.path}" for r in router.routes[3:]))

    async def _prune_links(self) -> None:
        while True:
            await anyio.sleep(PRUNE_EVERY)
            try:
                await self.links.prune()
            except Exception as exc:  # noqa: BLE001 - tried again at the next round
                log.warning("links: could not delete expired texts: %s", describe(exc))

    def public_link(self, path: str, ttl: float | None = None) -> str | None:
        """A signed link to `path` on this bridge's listener, as people reach it
        (`[http] public_url`), valid `ttl` seconds (default `[http] link_days`); None when
        the bridge gives out no links (no public_url). The route serving `path` is made
        with ``Route(..., signed=True)``."""
        return self.links.sign(path, ttl)

    async def publish_text(self, owner: str, text: str, *, content_type: str = "text/plain; charset=utf-8",
                           ttl: float | None = None) -> str | None:
        """Keep `text` in the database and return a signed link that shows it (a long
        message's whole text for a network that cannot carry it), or None when the bridge
        gives out no links. `owner` names the plug or hook, for the operator."""
        return await self.links.publish(owner, text, content_type, ttl)

    async def _health_route(self, request: Request) -> Response:
        health = self.health()
        return Response.json(health, 503 if health["status"] == "failed" else 200)

    async def _metrics_route(self, request: Request) -> Response:
        from .metrics import CONTENT_TYPE, render

        return Response(200, render(self), CONTENT_TYPE)

    async def _status_route(self, request: Request) -> Response:
        if not self.running:
            raise HTTPError(503, "the bridge is starting or stopping")
        return Response.json(self.status())

    def health(self) -> dict[str, Any]:
        """`ok` (every plug connected), `degraded` (some are not: which, and since when) or
        `failed` (the host is not running, or no plug is connected)."""
        now = time.time()
        plugs = {name: {"state": self.plug_state(name), "since": _iso(self._since.get(name, now)),
                        "for_seconds": round(now - self._since.get(name, now), 1)}
                 for name in sorted(self.plugs)}
        down = [name for name in sorted(self.plugs) if not self.plug_ready(name)]
        if not self.running or (self.plugs and len(down) == len(self.plugs)):
            status = "failed"
        elif down:
            status = "degraded"
        else:
            status = "ok"
        return {"status": status, "down": down, "plugs": plugs}

    def status(self) -> dict[str, Any]:
        """What `chanmux status` shows: plugs, links, channels, queued copies."""
        from ._version import __version__

        now = time.time()
        health = self.health()
        plugs = {name: {**health["plugs"][name], "type": type(plug).__name__,
                        "connections": self.plug_connection(name)}
                 for name, plug in sorted(self.plugs.items())}
        hooks = {name: {"state": hook.state.value, "type": type(hook).__name__,
                        "links": _links(hook)}
                 for name, hook in sorted(self.hooks.items())}
        channels: dict[str, Any] = {}
        seen = set(self.channels.values()) | set(self._traffic)
        for channel in seen:
            traffic = self._traffic.get(channel)
            received = traffic.last_received if traffic is not None else None
            relayed = traffic.last_relayed if traffic is not None else None
            channels[self.channel_label(channel)] = {
                "plug": channel.plug, "source": channel.source,
                "last_received": _iso(received) if received else None,
                "last_relayed": _iso(relayed) if relayed else None}
        queues = []
        for group in self.delivery_queues:
            for channel, queue in group.items():
                first = next(iter(queue), None)
                if first is None and not queue.down:
                    continue
                queues.append({"hook": group.owner, "target": self.channel_label(channel),
                               "queued": len(queue),
                               "oldest_age": round(now - first.since, 1) if first else 0.0,
                               "waiting_for": queue.waiting})
        return {"version": __version__, "running": self.running, "at": _iso(now),
                "status": health["status"], "plugs": plugs, "hooks": hooks,
                "channels": dict(sorted(channels.items())), "queues": queues}

    async def _replay(self) -> None:
        """Hand the hooks again what the inbox kept from the last run (received from a plug
        without history, not done when the bridge stopped or was killed)."""
        kept = await self.inbox.load()
        if not kept:
            return
        log.info("%d received messages were not done when the bridge last stopped; handing "
                 "them to the hooks again", len(kept))
        for sent in kept:
            await self.lanes.submit(sent, None, True, self.inbox.done(sent.key))

    async def _open_hook(self, hook: Hook) -> None:
        hook.state = State.starting
        try:
            with anyio.fail_after(self.settings.hook_timeout):
                await hook.open()
        except Exception as exc:  # noqa: BLE001 - one hook failing never stops the host
            hook.state = State.failed
            log.error("%s: failed to start (%s: %s); running without it", hook.name,
                      type(exc).__name__, exc)
            self.pm.unregister(hook)
            self.caller.invalidate()
            return
        hook.state = State.active

    async def _shutdown(self) -> None:
        snapshot = self.status()  # what `chanmux status` shows once the bridge is stopped
        for hook in sorted(self.hooks.values(), key=lambda h: h.priority, reverse=True):
            if hook.state is not State.failed:
                await self._close(hook)
        for plug in self.plugs.values():
            if plug.state not in (State.stopped, State.idle):
                await self._close(plug)
        for plug in self.plugs.values():
            if plug.state is not State.idle:
                try:
                    with anyio.fail_after(self.settings.close_timeout):
                        await plug.stopped()
                except Exception as exc:  # one plug failing here does not stop the rest
                    log.error("%s: failed to save its state at shutdown (%s)", plug.name,
                              describe(exc))
                    log.debug("%s: the failure at shutdown", plug.name, exc_info=True)
        for writer in self.store.writers:  # rows the hooks and plugs added while closing
            await writer.write_pending()
            if writer.pending:
                log.warning("%s: %d rows were not written before shutdown", writer.name, writer.pending)
        try:
            snapshot["stopped_at"] = _iso(time.time())
            await self.store.set_state("chanmux", "status", snapshot)
        except Exception as exc:  # noqa: BLE001 - the status is a courtesy; nothing depends on it
            log.debug("could not keep the status at the stop: %s", describe(exc))
        await self.store.run(self.store.dispose)
        self.stopped.set()
        log.info("stopped")

    def stop_budget(self) -> float:
        """Seconds a stop may take at most: each hook and plug closing, each plug saving its
        state (`close_timeout` each), and the database writers' last rows."""
        return self.settings.close_timeout * (len(self.hooks) + 2 * len(self.plugs)) + 30.0

    async def settle(self) -> None:
        """Before a stop: let the copies relay hooks are in the middle of delivering arrive
        (at most `SETTLE` seconds, and never longer than `[host] close_timeout`), so that a
        clean stop keeps for the next start only what had not been started, and the next
        start does not make those copies again."""
        with anyio.move_on_after(min(SETTLE, self.settings.close_timeout)):
            for group in self.delivery_queues:
                for queue in group:
                    await queue.settle()

    async def stop(self, timeout: float | None = None) -> None:
        """Stop a running host (as Ctrl-C does) and wait until everything is closed, at most
        `timeout` seconds (by default `stop_budget()`)."""
        timeout = self.stop_budget() if timeout is None else timeout
        await self.settle()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        with anyio.fail_after(timeout):
            await self.stopped.wait()

    async def _close(self, component: Plug | Hook) -> None:
        if isinstance(component, Plug):
            self._set_state(component, State.stopping)
        else:
            component.state = State.stopping
        try:
            with anyio.fail_after(self.settings.close_timeout):
                await component.close()
        except Exception:  # one component failing to close does not stop the rest
            log.exception("%s: failed to close", component.name)
        if isinstance(component, Plug):
            self._set_state(component, State.stopped)
        else:
            component.state = State.stopped
        log.info("%s: closed", component.name)

    async def wait_ready(self, timeout: float = 30.0, names: Iterable[str] | None = None) -> None:
        """Wait until the named plugs (default: all) are connected, or raise TimeoutError."""
        with anyio.fail_after(timeout):
            for name in names or list(self._ready):
                await self._ready[name].wait()

    # -- plug states -------------------------------------------------------------------------

    def _set_state(self, plug: Plug, state: State) -> None:
        """Move a plug to `state`, waking whoever waits for it to be ready (`until_ready`)."""
        if plug.state is not state:
            self._since[plug.name] = time.time()
        plug.state = state
        if state is State.active:
            self._connections[plug.name] = self._connections.get(plug.name, 0) + 1
        changed = self._changed.get(plug.name)
        if changed is not None:
            self._changed[plug.name] = anyio.Event()
            changed.set()

    def plug_ready(self, name: str) -> bool:
        """True while plug `name` is connected and can be sent to (its state is active)."""
        plug = self.plugs.get(name)
        return plug is not None and plug.state is State.active

    def plug_state(self, name: str) -> str:
        """The state of plug `name` as a word (`active`, `starting`, `failed`, ...)."""
        plug = self.plugs.get(name)
        return plug.state.value if plug is not None else "unknown"

    def plug_since(self, name: str) -> float:
        """When plug `name` entered its present state (Unix time)."""
        return self._since.get(name, self.metrics.started)

    def plug_connection(self, name: str) -> int:
        """How many times plug `name` has become active: a new number is a new connection."""
        return self._connections.get(name, 0)

    async def until_ready(self, name: str, newer_than: int | None = None) -> None:
        """Wait until plug `name` is active (with `newer_than`, on a connection made after that
        `plug_connection()` number: it failed and came back meanwhile)."""
        while True:
            plug = self.plugs.get(name)
            if plug is None:
                raise LookupError(f'no plug named "{name}"')
            if plug.state is State.active and (newer_than is None
                                               or self._connections.get(name, 0) > newer_than):
                return
            await self._changed[name].wait()

    def backoff(self, attempt: int) -> float:
        """Delay before reconnect attempt `attempt` (1, 2, ...): exponential, capped, jittered."""
        base = min(self.settings.reconnect_max, self.settings.reconnect_min * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)

    async def _supervise(self, plug: Plug) -> None:
        """Open and run a plug; when its connection fails, close it and try again with backoff.
        A failure no retry fixes (`ActionRequired`) is logged once as an error saying what to
        change, and retried slowly (every `reconnect_max` seconds) in case it was changed."""
        attempt = 0
        told: str | None = None  # the ActionRequired message already logged
        while True:
            reason: str | None = None
            needs_action = False
            opened_at = anyio.current_time()
            try:
                self._set_state(plug, State.starting)
                await plug.open()
                self._set_state(plug, State.active)
                if told is not None:
                    log.info("%s: connected (the problem reported before is solved)", plug.name)
                    told = None
                else:
                    log.info("%s: connected", plug.name)
                self._ready[plug.name].set()
                await self._notify(plug, State.active, None)
                await plug.run()
                reason = "connection ended"
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:  # a plug failing never stops the host
                real = cause(exc)
                needs_action = isinstance(real, ActionRequired)
                reason = str(real) if needs_action else describe(real)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s: failure", plug.name, exc_info=True)
            self._set_state(plug, State.failed)
            with anyio.CancelScope(shield=True):
                try:
                    with anyio.fail_after(self.settings.close_timeout):
                        await plug.close()
                except Exception:
                    log.exception("%s: failed to close after a failure", plug.name)
            if anyio.current_time() - opened_at > 60:
                attempt = 0
            attempt += 1
            if needs_action:
                delay = self.settings.reconnect_max
                if reason != told:
                    log.error("%s: %s; trying again every %gs until that is fixed", plug.name,
                              reason, delay)
                    told = reason
                else:
                    log.info("%s: still failing (%s); trying again in %gs", plug.name, reason,
                             delay)
            else:
                delay = self.backoff(attempt)
                log.warning("%s: disconnected (%s); reconnecting in %.1fs (attempt %d)",
                            plug.name, reason, delay, attempt)
            await self._notify(plug, State.failed, reason)
            await anyio.sleep(delay)

    async def _notify(self, plug: Plug, state: State, reason: str | None) -> None:
        if self._tg is not None and self.caller.impls("on_plug_state"):
            await self.caller.fanout("on_plug_state", plug=plug, state=state.value, reason=reason)

    # -- receiving ---------------------------------------------------------------------------

    def forget_when_done(self, owner: str, key: str,
                         then: Callable[[], Any] | None = None) -> delivery.Tracker:
        """For work restored at start from the state `owner`/`key` (what a plugin kept at its
        last stop): give each restored item a `Hold(tracker)`, then call `tracker.done()`.
        When the last hold is released the kept state is cleared and `then()` called; not
        while the host stops, when whoever kept it saves it again. Killed before, the work is
        restored again after the next start (at least once, never lost)."""

        async def forget() -> None:
            if self.running:
                await self.store.set_state(owner, key, [])
                if then is not None:
                    then()

        def done() -> None:
            if self.running:
                self.start_soon(forget, name=f"{owner}:forget-{key}")

        return delivery.Tracker(done, f"{owner}: {key} kept from the last run")

    @staticmethod
    def hold() -> Hold:
        """Take a hold on the received message the current task works for: the plug that
        received it is not told it is done until the hold is released. A hook that keeps
        work for later, or a plug whose `put` queues what it sends, takes one and releases
        it once the work is delivered, given up on, or saved for the next start. Where no
        message is tracked the hold does nothing."""
        return delivery.hold()

    async def receive(self, sent: SentMessage, source: Message | None = None, primary: bool = True,
                      on_handled: Callable[[], Any] | None = None) -> None:
        """Hand a message a plug received to the hooks. Returns once it is queued (at once,
        without a task switch, unless the channel's lane is full: then it waits for room);
        messages of one channel are handled in the order they were received. `on_handled` (if given) is
        called once the message is done: every hook has handled it and every hold taken for
        it (`hold()`) has been released, so a plug saves its resume point only past messages
        whose copies were delivered (see `chanmux.delivery`)."""
        if not self.lanes.running:
            raise HostStopped("the host is not running")
        echo = source is None and sent.key in self._echoes
        if echo and not self._echoes_heard():
            # the network's copy of something we put, and no hook listens to those: done
            # here, before any lane work (2 of the 3 messages a relay's copy costs)
            if on_handled is not None:
                on_handled()
            return
        # what may be the network's copy of something we put is never folded or kept
        ours = (echo or source is not None or sent.channel in self._inflight
                or (sent.user is not None and sent.user.is_self))
        membership = foldable(sent)
        if not ours:
            traffic = self._traffic.get(sent.channel) or self._new_traffic(sent.channel)
            traffic.received += 1
            traffic.last_received = time.time()
        if on_handled is None and not ours and not membership:
            plug = self.plugs.get(sent.channel.plug)
            if plug is not None and plug.journal:
                on_handled = self.inbox.keep(sent)  # a crash before it is done loses nothing
        await self.lanes.submit(sent, source, primary, on_handled, fold=membership and not ours)

    def _source_now(self, sent: SentMessage, source: Message | None) -> Message | None:
        """`_resolve_source` without waiting, or None when it must wait (most messages need
        not: the lane then makes no await for it)."""
        if source is not None:
            return source
        key = sent.key
        found = self._echoes.get(key)
        if found is not None:
            return found
        return None if sent.channel in self._inflight else sent

    async def _resolve_source(self, sent: SentMessage, source: Message | None) -> Message:
        """The message `sent` is a copy of, if the host put it (waiting for a put under way to
        the same channel, whose echo may overtake its reply); else `sent` itself."""
        if source is not None:
            return source
        if sent.key not in self._echoes and sent.channel in self._inflight:
            with anyio.move_on_after(self.settings.put_timeout):
                await self._inflight.settle(sent.channel)
        return self._echoes.get(sent.key, sent)

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every received message so far has been handled by the hooks."""
        with anyio.fail_after(timeout):
            await self.lanes.wait_idle()

    def _echoes_heard(self) -> bool:
        """Whether a hook wants the network's copies of what the host put (`Hook.echoes`)."""
        heard = self._echo_listeners
        if heard is None:
            heard = self._echo_listeners = any(
                hook.echoes for hook in self.hooks.values()
                if any(self.caller.owner_impl(spec, hook.name) for spec in ("before_receive", "on_receive")))
        return heard

    def is_echo(self, receipt: Receipt) -> bool:
        """True if the host put the message at `receipt` (it is the network's copy of ours)."""
        return receipt.key in self._echoes

    # -- sending -----------------------------------------------------------------------------

    def _remember(self, receipts: Iterable[Receipt], msg: Message) -> None:
        echoes = self._echoes
        for receipt in receipts:
            key = receipt.key
            if key in echoes:
                echoes.move_to_end(key)
            echoes[key] = msg
        if len(echoes) > self.settings.echo_cache:
            limit = self.settings.echo_cache
            while len(echoes) > limit:
                echoes.popitem(last=False)

    def _new_traffic(self, channel: Channel) -> Traffic:
        traffic = self._traffic[channel] = Traffic(channel.plug, self.channel_label(channel))
        return traffic

    def _plug(self, name: str, action: str) -> Plug:
        plug = self.plugs.get(name)
        if plug is None:
            raise LookupError(f'cannot {action}: no plug named "{name}"')
        return plug

    async def _send(self, spec: str, where: Channel, msg: Message | None, **kwargs: Any) -> Any:
        """Call the owning plug's put, edit or delete, bounded by the put timeout (or the lane's
        watchdog), while the channel counts a put under way, so that an echo overtaking the
        reply waits for it; the receipts are remembered to recognise the echo."""
        inflight = self._inflight
        seq = inflight.enter(where)
        try:
            result = await self.caller.owner(spec, where.plug, timeout=self.settings.put_timeout,
                                             msg=msg, **kwargs)
            if msg is not None:
                result = list(result) if result else []
                self._remember(result, msg)
        except Exception as exc:
            self.metrics.put_failures[where.plug, failure_reason(exc)] += 1
            raise
        finally:
            inflight.leave(where, seq)
        traffic = self._traffic.get(where) or self._new_traffic(where)
        traffic.relayed[spec] += 1
        traffic.last_relayed = time.time()
        return result

    async def typing_received(self, channel: Channel, user: User, active: bool) -> None:
        """A plug says `user` started or stopped typing in `channel`: every hook's
        `on_typing` hears it (concurrently, each within `hook_timeout`). Own typing (an
        `is_self` user) is not passed on. Since 0.2.4."""
        if user.is_self or not self.running or not self.caller.impls("on_typing"):
            return
        await self.caller.fanout("on_typing", channel=channel, user=user, active=active)

    async def typing(self, channel: Channel, user: User, active: bool) -> None:
        """Have the plug owning `channel` show that `user` is typing there, or no longer;
        nothing when the plug cannot. Best-effort: a failure is logged at DEBUG, never
        raised. Since 0.2.4."""
        plug = self.plugs.get(channel.plug)
        if plug is None or not plug.capabilities.typing or not self.plug_ready(channel.plug):
            return
        try:
            await self.caller.owner("typing", channel.plug, timeout=self.settings.hook_timeout,
                                    channel=channel, user=user, active=active)
        except NoOwner:
            return
        except Exception as exc:  # noqa: BLE001 - typing is a courtesy: never a failure
            log.debug("%s: typing in %s not shown: %s", channel.plug, channel.source,
                      describe(exc))

    async def put(self, channel: Channel, msg: Message) -> list[Receipt]:
        """Send `msg` to `channel` through `before_put` and the plug owning it; its receipts."""
        self._plug(channel.plug, "put")
        if self.caller.impls("before_put"):  # (no chain to await where no hook has one)
            changed = await self.caller.chain("before_put", "msg", channel=channel, msg=msg)
            if changed is None:
                return []
            msg = changed
        return await self._send("put", channel, msg, channel=channel)

    async def edit(self, sent: Receipt, msg: Message) -> list[Receipt]:
        """Edit the copy at `sent` in place where its plug can; elsewhere put the edit as a new
        message marked `edited`, with `edit_of` naming the earlier copy."""
        plug = self._plug(sent.channel.plug, "edit")
        if not (plug.capabilities.edit and self.caller.owner_impl("edit", plug.name)):
            edit_of = msg.edit_of if msg.edit_of is not None else sent
            return await self.put(sent.channel, msg.clone(edited=True, edit_of=edit_of))
        changed = await self.caller.chain("before_put", "msg", channel=sent.channel, msg=msg)
        if changed is None:
            return []
        return await self._send("edit", sent.channel, changed, sent=sent)

    async def delete(self, sent: Receipt) -> bool:
        """Delete the copy at `sent` where its plug can; False where it cannot."""
        plug = self._plug(sent.channel.plug, "delete")
        if not plug.capabilities.delete or not self.caller.owner_impl("delete", plug.name):
            return False
        self._echoes.setdefault(sent.key, Message(deleted=True))
        return bool(await self._send("delete", sent.channel, None, sent=sent))

    # -- look-ups ----------------------------------------------------------------------------

    async def _lookup(self, spec: str, owner: str, **kwargs: Any) -> Any:
        try:
            return await self.caller.owner(spec, owner, **kwargs)
        except NoOwner:
            return None

    async def channel_title(self, channel: Channel) -> str | None:
        return await self._lookup("channel_title", channel.plug, channel=channel)

    async def channel_members(self, channel: Channel) -> list[Any] | None:
        return await self._lookup("channel_members", channel.plug, channel=channel)

    async def channel_is_private(self, channel: Channel) -> bool | None:
        return await self._lookup("channel_is_private", channel.plug, channel=channel)

    async def channel_link(self, channel: Channel) -> str | None:
        return await self._lookup("channel_link", channel.plug, channel=channel)

    async def public_channels(self, plug: str) -> list[Channel] | None:
        return await self._lookup("public_channels", plug)

    async def private_channels(self, plug: str) -> list[Channel] | None:
        return await self._lookup("private_channels", plug)

    # -- tasks -------------------------------------------------------------------------------

    def start_soon(self, fn: Any, *args: Any, name: str | None = None) -> None:
        """Run a background task owned by the host (cancelled when the host stops)."""
        if self._tg is None:
            raise RuntimeError("the host is not running")
        self._tg.start_soon(fn, *args, name=name)
