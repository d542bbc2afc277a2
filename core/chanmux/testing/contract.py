"""The plug contract suite: what every plug must do for the host, tested against itself.

A plug package subclasses `PlugContract` in its tests and gives it a `contract_env` fixture
yielding a `ContractEnv`: a running host with the plug connected to a real server, a channel,
and a second "human" client on that server. The suite then checks receiving (text, actions,
joins and leaves, edits, deletes, renames, titles, long and multi-line text), sending (text,
actions, formatting, order, ids, long and multi-line text), echoes, edits, deletes, look-ups,
a dropped connection coming back, `on_handled` (when a received message is done) and closing,
adapting to what the plug and its network can do::

    class TestMyPlugContract(PlugContract):
        @pytest.fixture
        async def contract_env(self, my_server, tmp_path):
            async with run_host(config(my_server), path=tmp_path / "c.toml") as host:
                async with my_human_client(my_server) as human:
                    yield MyEnv(host, human)

Cases a network cannot have (people on IRC cannot edit or delete) are not skipped: the plug
says so (`ContractEnv.human_can`, `Plug.capabilities`) and the case checks the declaration is
consistent and that what happens instead is right (on IRC a corrected line arrives as a new
message, never as an edit). A skip would hide a plug that simply forgot to implement the case;
a passing check of the declared behaviour cannot. Each such test also records a
``not_applicable`` property (shown in JUnit XML reports) saying what was not applicable.

Every wait that runs out fails with `ContractTimeout`, naming the plug, the channel and what
was waited for, never with a bare TimeoutError.
"""

from __future__ import annotations

import abc
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import attrs
import pytest

from ..host import Host
from ..model import Channel, Message, SentMessage, User
from ..plug import Hook, NoConfig, Plug, State
from ..richtext import RichText, Segment
from .recorder import Received, RecorderHook

T = TypeVar("T")

#: What `ContractEnv.human_can` may hold: things the human's client does that the plug reports.
HUMAN_CAN = frozenset({"edit", "delete", "rename", "title"})


@attrs.define
class Seen:
    """What the human's client saw in the channel: a new message, an edit or a delete.

    `kind` is ``"message"``, ``"edit"`` or ``"delete"``.

    `id` is the network's id of what was seen. For a message the bridge put it must equal the
    `Receipt.id` the plug returned from `put` for it (the host stores that id to find the
    message again for edits, deletes and replies), so ``seen.id == receipts[0].id``. Use None
    only where the human's client is shown no ids (plain IRC).

    `target` is, for an edit or a delete, the id of the message edited or deleted: it must
    equal the `Receipt.id` of the original put (the receipt passed to `Host.edit` /
    `Host.delete`), whatever id the network gives the edit or delete event itself (that one
    may go in `id`). None for a new message.

    `text` is what the human sees (for an edit, the new text), parsed into RichText by the
    network's own parser, so formatting can be checked; `action` True for an action (/me);
    `sender` the name of who said it, as the human's client shows it, if known.
    """

    kind: str
    text: RichText | None = None
    action: bool = False
    id: str | None = None
    target: str | None = None
    sender: str | None = None

    @property
    def plain(self) -> str:
        return self.text.plain if self.text else ""


class ContractTimeout(AssertionError):
    """A wait of the contract suite ran out; the message says for what, where and how long."""


class ContractEnv(abc.ABC):
    """What a plug package provides to run the contract suite (one per test).

    Attributes the subclass sets (usually in `__init__`):

    `host`
        The running `Host` (e.g. from `chanmux.testing.run_host`), whose plugs are connected.
    `plug`
        The plug under test, as configured in that host (``host.plugs[name]``).
    `channel`
        A channel of that plug, configured in the host (``host.channels[name]``), that both the
        plug and the human are in. A fresh one per test: the suite expects no earlier traffic.
    `recorder`
        A `RecorderHook` configured in the host (``hooks = {"rec": {"type": "recorder"}}``):
        it is how the suite sees what the plug received.
    `human_name`
        The name the human appears under on the network (IRC nick, Matrix user id or
        localpart): the suite looks for it in the `User.username` or `User.id` of what the
        plug reports the human said. After `human_rename` it is the new name.
    `formats`
        Formats the human's client can see (a subset of bold, italic, underline, strike,
        code); each is put and checked. Default: bold and italic.
    `human_can`
        What the human's client can do on this network, beyond saying things, that the plug
        must report: a subset of `HUMAN_CAN` (``"edit"``, ``"delete"``, ``"rename"``,
        ``"title"``), each needing its ``human_*`` method below. What is left out is checked
        as not applicable (see the module docstring): a plug whose `Capabilities.edit` is True
        but whose environment leaves out ``"edit"`` fails, since a network that edits in
        place lets people edit too; likewise delete, and `Capabilities.titles` for titles.
        Default: none (an environment written before this field existed).
    `human_text_bytes`
        The longest text, in UTF-8 bytes, the human's client sends as one message (on IRC what
        fits in one line, about 300 with the server's prefix); the long-text case has the
        human say a text this long. Default 2000.
    `drop_reconnects`
        True when `drop_connection` ends the plug's connection so that the host opens it again
        (`Host.plug_connection` grows); False for a plug that rides the drop out by itself
        (HTTP requests retried) and stays active. Default True.
    """

    host: Host
    plug: Plug
    channel: Channel
    recorder: RecorderHook
    #: username (nick, localpart) the human appears under on the network
    human_name: str
    #: formats the human's client can see (subset of bold, italic, underline, strike, code)
    formats: frozenset[str] = frozenset({"bold", "italic"})
    #: what the human's client can do that the plug must report (subset of HUMAN_CAN)
    human_can: frozenset[str] = frozenset()
    #: the longest text (UTF-8 bytes) the human sends as one message
    human_text_bytes: int = 2000
    #: whether drop_connection makes the host open the plug's connection anew
    drop_reconnects: bool = True

    @abc.abstractmethod
    async def human_say(self, text: str) -> None:
        """The human says `text` in the channel. A text with line breaks is sent the way the
        human's client sends a pasted one: one message with line breaks, or one message per
        line where the network has no multi-line messages (IRC)."""

    @abc.abstractmethod
    async def human_act(self, text: str) -> None:
        """An action (/me)."""

    @abc.abstractmethod
    async def human_join(self) -> None:
        """The human joins the channel (having left it first if needed)."""

    @abc.abstractmethod
    async def human_leave(self) -> None: ...

    @abc.abstractmethod
    async def human_sees(self, predicate: Callable[[Seen], Any], timeout: float = 20.0) -> Seen:
        """The first thing the human saw in the channel matching `predicate` (waits for it,
        raising TimeoutError after `timeout`). Everything seen since the environment was made
        counts, in the order it was seen, so waiting twice finds the same first match;
        `predicate` may be called more than once for the same thing."""

    async def human_edit(self, id: str, text: str) -> None:
        """The human edits their message `id` (the `SentMessage.id` the plug reported for it)
        to say `text`. Needed when `human_can` has ``"edit"``."""
        raise NotImplementedError(f"{type(self).__name__}.human_edit (human_can has 'edit')")

    async def human_delete(self, id: str) -> None:
        """The human deletes their message `id` (as the plug reported it). Needed when
        `human_can` has ``"delete"``."""
        raise NotImplementedError(f"{type(self).__name__}.human_delete (human_can has 'delete')")

    async def human_rename(self, name: str) -> None:
        """The human changes the name they are shown under to `name` (an IRC nick, a Matrix
        display name; the suite's names are a letter and 6 more letters or digits) and sets
        `human_name` to the name the plug will now report in `User.username` or `User.id`.
        Needed when `human_can` has ``"rename"``."""
        raise NotImplementedError(f"{type(self).__name__}.human_rename (human_can has 'rename')")

    async def human_set_title(self, title: str) -> None:
        """The human sets the channel's title (IRC topic, Matrix room name) to `title`.
        Needed when `human_can` has ``"title"``."""
        raise NotImplementedError(f"{type(self).__name__}.human_set_title (human_can has 'title')")

    async def drop_connection(self) -> None:
        """The network drops the plug's connection, as a server restart or a network failure
        would (not a call to the plug's `close`), and lets it connect again. Return once the
        drop happened: the connection is closed under the plug, or its requests have failed.
        The suite then waits for the plug to be back (see `drop_reconnects`) and checks that
        messages flow both ways."""
        raise NotImplementedError(
            f"{type(self).__name__}.drop_connection: every plug's connection can drop; say how "
            "the network drops it (a proxy cutting the socket, a server restart)")


def token(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def waited(env: ContractEnv, what: str, awaitable: Awaitable[T], timeout: float) -> T:
    """`awaitable`, or ContractTimeout naming the plug, the channel and `what` if it ran out."""
    try:
        return await awaitable
    except TimeoutError:
        raise ContractTimeout(
            f"plug {env.plug.name!r} ({type(env.plug).__name__}), channel {env.channel}: "
            f"waited {timeout:g}s for {what}; it did not come") from None


async def human_saw(env: ContractEnv, what: str, predicate: Callable[[Seen], Any],
                    timeout: float = 20.0) -> Seen:
    """What the human saw matching `predicate`; ContractTimeout saying `what` was awaited."""
    return await waited(env, f"the human to see {what}", env.human_sees(predicate, timeout), timeout)


async def plug_got(env: ContractEnv, what: str, predicate: Callable[[Received], Any],
                   timeout: float = 20.0) -> Received:
    """What the plug received matching `predicate`; ContractTimeout saying `what` was awaited."""
    return await waited(env, f"the plug to receive {what}",
                        env.recorder.wait_for(predicate, timeout=timeout), timeout)


def _has(word: str) -> Callable[[Received], bool]:
    """A received message from someone else whose text holds `word`."""
    return lambda r: (r.sent.text is not None and word in r.sent.text.plain and not r.is_echo
                      and not (r.sent.user is not None and r.sent.user.is_self))


def _names(user: User | None) -> tuple[str, ...]:
    if user is None:
        return ()
    return tuple(n for n in (user.username, user.id, user.real_name) if n)


def _not_applicable(record: Callable[[str, object], None], env: ContractEnv, what: str,
                    why: str) -> None:
    record("not_applicable", f"{env.plug.name}: {what}: {why}")


async def _back(env: ContractEnv, before: int, timeout: float = 60.0) -> None:
    """Wait until the plug is ready again after a drop (on a new connection if it reconnects)."""
    name = env.plug.name
    if env.drop_reconnects:
        await waited(env, f"a new connection after the drop (connection #{before} ended)",
                     _fail_after(timeout, env.host.until_ready(name, newer_than=before)), timeout)
    else:
        await waited(env, "the plug to be active after the drop",
                     _fail_after(timeout, env.host.until_ready(name)), timeout)


async def _fail_after(timeout: float, awaitable: Awaitable[T]) -> T:
    with anyio.fail_after(timeout):
        return await awaitable


def _numbers(tag: str, width: int, texts: list[str]) -> list[int]:
    """The numbers of the words `tag` + `width` digits found in `texts`, in order."""
    pattern = re.compile(rf"{re.escape(tag)}(\d{{{width}}})")
    return [int(m) for text in texts for m in pattern.findall(text)]


async def _human_collects(env: ContractEnv, what: str, tag: str, first: str, last: str,
                          timeout: float = 30.0) -> list[str]:
    """The texts of the messages holding `tag` the human saw, in order, up to the one holding
    `last` (the plug may split one message in several)."""
    texts: list[str] = []

    def collect(seen: Seen) -> bool:
        if seen.kind != "message" or tag not in seen.plain:
            return False
        if first in seen.plain:  # looked at again from the start: begin again
            texts.clear()
        texts.append(seen.plain)
        return last in seen.plain

    await human_saw(env, what, collect, timeout)
    return texts


class _Probe(Hook):
    """A hook the on_handled case adds to the running host: it keeps a hold on each received
    message holding `tag`, so the case decides when the message is done."""

    def __init__(self, host: Host, tag: str) -> None:
        super().__init__(f"contract-probe-{tag}", NoConfig(), host, priority=1000)
        self.tag = tag
        self.holds: dict[str, Any] = {}
        self._changed = anyio.Event()

    async def on_receive(self, sent: SentMessage, source: Message, primary: bool) -> None:
        if sent.text is not None and self.tag in sent.text.plain and "held" in sent.text.plain:
            self.holds[sent.text.plain] = self.host.hold()
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_held(self, text: str) -> Any:
        while text not in self.holds:
            await self._changed.wait()
        return self.holds[text]


class _Done:
    """Watches the callbacks the host calls when received messages are done (`on_handled`
    passed by the plug, or the inbox's for a journaled plug), for messages holding `tag`."""

    def __init__(self, host: Host, tag: str) -> None:
        self.host = host
        self.tag = tag
        self.calls: dict[str, int] = {}  # text -> times its callback ran
        self.how: dict[str, str] = {}  # text -> "plug" or "inbox"
        self._changed = anyio.Event()
        self._receive = host.receive
        self._keep = host.inbox.keep

    def _watch(self, sent: SentMessage, callback: Callable[[], Any], how: str) -> Callable[[], Any]:
        text = sent.text.plain if sent.text is not None else ""
        if self.tag not in text:
            return callback
        self.calls.setdefault(text, 0)
        self.how[text] = how

        def done() -> Any:
            self.calls[text] += 1
            self._changed.set()
            self._changed = anyio.Event()
            return callback()

        return done

    def __enter__(self) -> _Done:
        receive, keep = self._receive, self._keep

        async def watched_receive(sent: SentMessage, source: Message | None = None,
                                  primary: bool = True,
                                  on_handled: Callable[[], Any] | None = None) -> None:
            if on_handled is not None:
                on_handled = self._watch(sent, on_handled, "plug")
            await receive(sent, source, primary, on_handled=on_handled)

        self.host.receive = watched_receive  # type: ignore[method-assign]
        self.host.inbox.keep = lambda sent: self._watch(sent, keep(sent), "inbox")  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.host.receive
        del self.host.inbox.keep

    async def wait_called(self, text: str) -> None:
        while not self.calls.get(text):
            await self._changed.wait()


@pytest.mark.anyio
class PlugContract:
    """Subclass with a `contract_env` fixture; every test here then runs against the plug."""

    # -- receiving ---------------------------------------------------------------------------

    async def test_receive_text(self, contract_env: ContractEnv) -> None:
        env = contract_env
        word = token("hello")
        await env.human_say(f"{word} from the human")
        got = await plug_got(env, f"the human's {word!r}", _has(word))
        assert got.sent.channel == env.channel
        assert got.sent.text.plain == f"{word} from the human"
        assert got.sent.id
        assert got.sent.user is not None and not got.sent.user.is_self
        assert env.human_name in (got.sent.user.username or "", got.sent.user.id or "")
        assert not got.sent.action
        assert not got.is_echo

    async def test_receive_action(self, contract_env: ContractEnv) -> None:
        env = contract_env
        word = token("waves")
        await env.human_act(word)
        got = await plug_got(env, f"the human's action {word!r}", _has(word))
        assert got.sent.action
        assert got.sent.text.plain == word

    async def test_receive_join_and_leave(self, contract_env: ContractEnv, record_property) -> None:
        """The human leaves the channel and joins again: the plug reports each in the channel
        (`left`, then `joined`, naming the human). Joins and leaves in other channels the
        network shares with the plug may come meanwhile and are passed over."""
        env = contract_env
        if not env.plug.capabilities.joins:
            _not_applicable(record_property, env, "joins and leaves", "Capabilities.joins is False")
            assert env.plug.capabilities.joins is False
            return
        start = len(env.recorder.received)
        await env.human_leave()
        left = await plug_got(env, f"{env.human_name} leaving",
                              lambda r: r in env.recorder.received[start:]
                              and r.sent.channel == env.channel and r.sent.left)
        assert any(env.human_name in (u.username or "", u.id or "") for u in left.sent.left)
        await env.human_join()
        joined = await plug_got(env, f"{env.human_name} joining",
                                lambda r: r in env.recorder.received[start:]
                                and r.sent.channel == env.channel and r.sent.joined)
        assert any(env.human_name in (u.username or "", u.id or "") for u in joined.sent.joined)

    async def test_receive_edit(self, contract_env: ContractEnv, record_property) -> None:
        """The human edits a message: the plug reports it as `SentMessage(id=<the original's
        id>, edited=True, revision=<this edit's id>)` with the new text."""
        env = contract_env
        word = token("said")
        await env.human_say(f"{word} before")
        original = await plug_got(env, f"the human's {word!r}", _has(word))
        if "edit" not in env.human_can:
            _not_applicable(record_property, env, "incoming edits",
                            "the human's client cannot edit on this network")
            assert not env.plug.capabilities.edit, (
                "the plug edits in place (Capabilities.edit) but its ContractEnv says people "
                "cannot edit: add 'edit' to ContractEnv.human_can and implement human_edit")
            # what people do instead (say it again, corrected) is a new message, not an edit
            await env.human_say(f"{word} after")
            again = await plug_got(env, f"the human's corrected {word!r}",
                                   lambda r: _has(word)(r) and "after" in r.sent.text.plain)
            assert not again.sent.edited and not original.sent.edited
            assert again.sent.id != original.sent.id
            return
        await env.human_edit(original.sent.id, f"{word} after")
        edit = await plug_got(env, f"the edit of {word!r} (id {original.sent.id})",
                              lambda r: _has(word)(r) and "after" in r.sent.text.plain)
        assert edit.sent.edited, "an edit must be reported with edited=True"
        assert edit.sent.id == original.sent.id, "an edit's id is the id of the message edited"
        assert edit.sent.revision, "an edit names itself in revision"
        assert edit.sent.text.plain == f"{word} after"
        assert edit.sent.channel == env.channel
        assert env.human_name in _names(edit.sent.user)

    async def test_receive_delete(self, contract_env: ContractEnv, record_property) -> None:
        """The human deletes a message: the plug reports `SentMessage(id=<its id>,
        deleted=True)`, and nothing else (no text)."""
        env = contract_env
        word = token("oops")
        await env.human_say(word)
        original = await plug_got(env, f"the human's {word!r}", _has(word))
        if "delete" not in env.human_can:
            _not_applicable(record_property, env, "incoming deletes",
                            "the human's client cannot delete on this network")
            assert not env.plug.capabilities.delete, (
                "the plug deletes (Capabilities.delete) but its ContractEnv says people cannot "
                "delete: add 'delete' to ContractEnv.human_can and implement human_delete")
            assert not original.sent.deleted
            assert await env.host.delete(original.sent.receipt()) is False
            return
        await env.human_delete(original.sent.id)
        gone = await plug_got(env, f"the delete of {word!r} (id {original.sent.id})",
                              lambda r: r.sent.deleted and r.sent.id == original.sent.id)
        assert gone.sent.channel == env.channel
        assert not gone.sent.text, "a delete carries no text"
        assert not gone.is_echo

    async def test_receive_rename(self, contract_env: ContractEnv, record_property) -> None:
        """The human changes their name: the plug reports `renamed=(before, after)` in the
        channel, naming the old and the new name; later messages come under the new one."""
        env = contract_env
        if "rename" not in env.human_can:
            _not_applicable(record_property, env, "renames",
                            "the human's client cannot change its name on this network")
            assert "rename" not in env.human_can
            return
        old = env.human_name
        new = "r" + uuid.uuid4().hex[:6]
        start = len(env.recorder.received)
        await env.human_rename(new)
        # reported in each channel the human shares with the plug: look at the suite's one
        got = await plug_got(env, f"{old} renamed to {new}",
                             lambda r: r in env.recorder.received[start:] and r.sent.renamed
                             and r.sent.channel == env.channel)
        before, after = got.sent.renamed
        assert old in _names(before), (old, before)
        assert new in _names(after), (new, after)
        assert got.sent.is_membership and not got.sent.text
        word = token("renamed")
        await env.human_say(word)
        said = await plug_got(env, f"{word!r} said under the new name {new}", _has(word))
        assert env.human_name in _names(said.sent.user)

    async def test_receive_title(self, contract_env: ContractEnv, record_property) -> None:
        """The human sets the channel's title: the plug reports `title=<the new title>`, and
        `channel_title` answers it from then on."""
        env = contract_env
        if "title" not in env.human_can:
            _not_applicable(record_property, env, "titles",
                            "the human cannot set the channel's title on this network")
            assert not env.plug.capabilities.titles, (
                "the plug has titles (Capabilities.titles) but its ContractEnv says people "
                "cannot set one: add 'title' to ContractEnv.human_can and implement "
                "human_set_title")
            return
        title = f"title {token()}"
        await env.human_set_title(title)
        got = await plug_got(env, f"the title {title!r}", lambda r: r.sent.title == title)
        assert got.sent.channel == env.channel
        assert got.sent.is_event and not got.sent.text
        assert await env.host.channel_title(env.channel) == title

    async def test_receive_long_text(self, contract_env: ContractEnv) -> None:
        """A text as long as the human can send arrives whole and in order (in one message,
        or in several if the network split it)."""
        env = contract_env
        tag = token("L")[:7]
        count = max(2, (env.human_text_bytes - 10) // 12)  # "tag" + 4 digits + space
        text = " ".join(f"{tag}{i:04d}" for i in range(count))
        await env.human_say(text)
        last = f"{tag}{count - 1:04d}"
        await plug_got(env, f"the end ({last}) of the human's {len(text)}-byte text", _has(last))
        texts = [r.sent.text.plain for r in env.recorder.received if _has(tag)(r)]
        assert _numbers(tag, 4, texts) == list(range(count)), "words lost or out of order"

    async def test_receive_multiline_text(self, contract_env: ContractEnv) -> None:
        """Three lines said at once arrive, in order, as one message with line breaks or as
        one message per line."""
        env = contract_env
        tag = token("M")[:7]
        lines = [f"{tag}{i:02d} line {word}" for i, word in enumerate(["one", "two", "three"])]
        await env.human_say("\n".join(lines))
        await plug_got(env, f"the last line {lines[-1]!r}", _has(f"{tag}02"))
        texts = [r.sent.text.plain for r in env.recorder.received if _has(tag)(r)]
        assert _numbers(tag, 2, texts) == [0, 1, 2], texts
        joined = "\n".join(texts)
        assert all(line in joined for line in lines), texts

    # -- sending -----------------------------------------------------------------------------

    async def test_put_text_reaches_the_human(self, contract_env: ContractEnv) -> None:
        env = contract_env
        word = token("put")
        receipts = await env.host.put(env.channel, Message(
            text=f"{word} says hi", user=User(id="x", username="alice", real_name="Alice")))
        assert receipts, "put returned no receipt"
        assert all(r.channel == env.channel and r.id for r in receipts)
        seen = await human_saw(env, repr(word), lambda s: s.kind == "message" and word in s.plain)
        assert f"{word} says hi" in seen.plain
        if seen.id is not None:
            assert seen.id in {r.id for r in receipts}, "Seen.id must be the put's Receipt.id"

    async def test_put_action(self, contract_env: ContractEnv) -> None:
        env = contract_env
        word = token("dances")
        await env.host.put(env.channel, Message(text=word, action=True,
                                                user=User(id="x", username="alice")))
        seen = await human_saw(env, f"the action {word!r}",
                               lambda s: s.kind == "message" and word in s.plain)
        assert seen.action or "alice" in seen.plain

    async def test_put_formatting(self, contract_env: ContractEnv) -> None:
        env = contract_env
        for fmt in sorted(env.formats):
            word = token(fmt)
            text = RichText([Segment("plain "), Segment(word, **{fmt: True}), Segment(" end")])
            await env.host.put(env.channel, Message(text=text, user=User(id="x", username="bob")))
            seen = await human_saw(env, f"{word!r} in {fmt}",
                                   lambda s, w=word: s.kind == "message" and w in s.plain)
            assert seen.text is not None
            formatted = [seg for seg in seen.text if word in seg.text]
            assert formatted and all(getattr(seg, fmt) for seg in formatted), (fmt, seen.text)
            assert not any(getattr(seg, fmt) for seg in seen.text if "plain" in seg.text)

    async def test_put_keeps_order_and_gives_unique_ids(self, contract_env: ContractEnv) -> None:
        env = contract_env
        word = token("seq")
        ids: list[str] = []
        for i in range(5):
            receipts = await env.host.put(env.channel, Message(text=f"{word} {i}",
                                                               user=User(id="x", username="carol")))
            ids.extend(r.id for r in receipts)
        assert len(ids) == len(set(ids)) >= 5
        seen: list[str] = []
        for i in range(5):
            got = await human_saw(env, f"{word} {i}",
                                  lambda s, i=i: s.kind == "message" and f"{word} {i}" in s.plain)
            seen.append(got.plain)
        assert [s.split(word)[1].strip() for s in seen] == [str(i) for i in range(5)]

    async def test_put_long_text(self, contract_env: ContractEnv) -> None:
        """A long text put reaches the human whole and in order; the plug may split it (within
        `Capabilities.max_message_bytes`, which the text stays well inside)."""
        env = contract_env
        limit = env.plug.capabilities.max_message_bytes
        size = 2000 if limit is None else min(2000, int(limit * 0.6))
        tag = token("P")[:7]
        count = max(2, size // 12)
        text = " ".join(f"{tag}{i:04d}" for i in range(count))
        receipts = await env.host.put(env.channel, Message(text=text, user=User(id="x",
                                                                                username="gus")))
        assert receipts, "put returned no receipt"
        first, last = f"{tag}0000", f"{tag}{count - 1:04d}"
        texts = await _human_collects(env, f"the end ({last}) of a {len(text)}-byte text", tag,
                                      first, last)
        assert _numbers(tag, 4, texts) == list(range(count)), "words lost or out of order"

    async def test_put_multiline_text(self, contract_env: ContractEnv) -> None:
        """Three lines put as one message reach the human in order (as one message with line
        breaks, or one per line)."""
        env = contract_env
        tag = token("N")[:7]
        lines = [f"{tag}{i:02d} line {word}" for i, word in enumerate(["one", "two", "three"])]
        await env.host.put(env.channel, Message(text="\n".join(lines),
                                                user=User(id="x", username="hal")))
        texts = await _human_collects(env, f"the last line {lines[-1]!r}", tag, f"{tag}00",
                                      f"{tag}02")
        assert _numbers(tag, 2, texts) == [0, 1, 2], texts
        joined = "\n".join(texts)
        assert all(line.split(" ", 1)[1] in joined for line in lines), texts

    async def test_own_messages_are_known_as_echoes(self, contract_env: ContractEnv) -> None:
        env = contract_env
        word = token("echo")
        receipts = await env.host.put(env.channel, Message(text=word, user=User(id="x", username="dave")))
        await human_saw(env, repr(word), lambda s: word in s.plain)
        marker = token("after")
        await env.human_say(marker)
        await plug_got(env, f"the human's {marker!r}",
                       lambda r: r.sent.text is not None and marker in r.sent.text.plain)
        for r in env.recorder.received:
            if r.sent.text is not None and word in r.sent.text.plain:
                assert r.is_echo or r.sent.user is not None and r.sent.user.is_self, \
                    "the plug relayed its own message as a new one"
                assert env.host.is_echo(r.sent) or r.sent.id not in {x.id for x in receipts}

    async def test_edit(self, contract_env: ContractEnv) -> None:
        env = contract_env
        word = token("orig")
        receipts = await env.host.put(env.channel, Message(text=f"{word} first version",
                                                           user=User(id="x", username="erin")))
        await human_saw(env, repr(word), lambda s: word in s.plain)
        await env.host.edit(receipts[0], Message(text=f"{word} second version",
                                                 user=User(id="x", username="erin")))
        if env.plug.capabilities.edit:
            seen = await human_saw(env, f"the edit of {word!r} (id {receipts[0].id})",
                                   lambda s: s.kind == "edit" and "second" in s.plain)
            assert seen.target == receipts[0].id, "Seen.target must be the put's Receipt.id"
        else:
            seen = await human_saw(env, f"the edit of {word!r} as a new message",
                                   lambda s: s.kind == "message" and "second" in s.plain)
            assert "second" in seen.plain

    async def test_delete(self, contract_env: ContractEnv) -> None:
        env = contract_env
        word = token("gone")
        receipts = await env.host.put(env.channel, Message(text=word, user=User(id="x", username="fay")))
        await human_saw(env, repr(word), lambda s: word in s.plain)
        deleted = await env.host.delete(receipts[0])
        if env.plug.capabilities.delete:
            assert deleted
            seen = await human_saw(env, f"the delete of {word!r} (id {receipts[0].id})",
                                   lambda s: s.kind == "delete" and s.target == receipts[0].id)
            assert seen.target == receipts[0].id
        else:
            assert deleted is False

    # -- the connection ----------------------------------------------------------------------

    async def test_reconnect(self, contract_env: ContractEnv) -> None:
        """The network drops the plug's connection; it comes back by itself (the host
        reconnecting it, or the plug riding it out) and messages flow both ways again."""
        env = contract_env
        before = env.host.plug_connection(env.plug.name)
        await env.drop_connection()
        await _back(env, before)
        assert env.plug.state is State.active
        word = token("back")
        await env.human_say(f"{word} from the human")
        await plug_got(env, f"the human's {word!r} after the drop", _has(word), timeout=60)
        put = token("again")
        receipts = await env.host.put(env.channel, Message(text=f"{put} to the human",
                                                           user=User(id="x", username="ivy")))
        assert receipts and all(r.id for r in receipts)
        await human_saw(env, f"{put!r} put after the drop",
                        lambda s: s.kind == "message" and put in s.plain, timeout=60)
        if env.drop_reconnects:
            assert env.host.plug_connection(env.plug.name) > before

    async def test_on_handled(self, contract_env: ContractEnv) -> None:
        """A received message is done (`on_handled`, core/README.md "When a message is done")
        only once every hook handled it and every hold taken for it was released: the plug
        passes `on_handled` to `Host.receive` (it resumes by itself) or sets `journal` (the
        host keeps the message in its inbox). The host calls it once; the plug never does."""
        env = contract_env
        tag = token("H")
        probe = env.host.add_hook(_Probe(env.host, tag))
        with _Done(env.host, tag) as done:
            held = f"{tag} held"
            await env.human_say(held)
            hold = await waited(env, f"a hook to receive {held!r}",
                                _fail_after(20, probe.wait_held(held)), 20)
            assert hold.held, (
                f"nothing tracks when {held!r} is done: the plug {env.plug.name!r} neither "
                "passes on_handled to host.receive nor sets journal = True, so a crash loses "
                "what it received but did not relay")
            assert done.calls.get(held) == 0, done.calls
            await waited(env, "the hooks to handle what was received", env.host.wait_idle(20), 20)
            assert done.calls[held] == 0, "done before the hook's hold was released"
            free = f"{tag} free"
            await env.human_say(free)
            await waited(env, f"{free!r} to be done (no hold taken)",
                         _fail_after(20, done.wait_called(free)), 20)
            assert done.calls[held] == 0, "done before the hook's hold was released"
            hold.release()
            await waited(env, f"{held!r} to be done once its hold was released",
                         _fail_after(20, done.wait_called(held)), 20)
            await waited(env, "the hooks to be idle", env.host.wait_idle(20), 20)
            assert done.calls == {held: 1, free: 1}, done.calls
            assert done.how[held] == done.how[free]
            assert (done.how[held] == "inbox") == bool(env.plug.journal)

    # -- look-ups and closing ----------------------------------------------------------------

    async def test_lookups(self, contract_env: ContractEnv) -> None:
        env = contract_env
        title = await env.host.channel_title(env.channel)
        assert title is None or isinstance(title, str)
        members = await env.host.channel_members(env.channel)
        if members is not None:
            assert all(isinstance(m, User) for m in members)
        assert await env.host.channel_is_private(env.channel) in (False, None)
        public = await env.host.public_channels(env.plug.name)
        if public is not None:
            assert env.channel in public

    async def test_close_cleanly(self, contract_env: ContractEnv) -> None:
        env = contract_env
        assert env.plug.state is State.active
        await env.host.stop()
        assert env.plug.state is State.stopped
        assert all(h.state in (State.stopped, State.failed) for h in env.host.hooks.values())
        await env.plug.close()  # closing twice is harmless


__all__ = ["ContractEnv", "ContractTimeout", "HUMAN_CAN", "PlugContract", "Seen", "human_saw",
           "plug_got", "token", "waited"]
