"""The plug contract suite: what every plug must do for the host, tested against itself.

A plug package subclasses `PlugContract` in its tests and gives it a `contract_env` fixture
yielding a `ContractEnv`: a running host with the plug connected to a real server, a channel,
and a second "human" client on that server. The suite then checks receiving, sending,
formatting, ids, edits, deletes, look-ups and closing, adapting to the plug's capabilities.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from ..host import Host
from ..model import Channel, Message, User
from ..plug import Plug, State
from ..richtext import RichText, Segment
from .recorder import RecorderHook


@attrs.define
class Seen:
    """What the human's client saw: a new message, an edit or a delete (of `target`)."""

    kind: str
    text: RichText | None = None
    action: bool = False
    id: str | None = None
    target: str | None = None
    sender: str | None = None

    @property
    def plain(self) -> str:
        return self.text.plain if self.text else ""


class ContractEnv(abc.ABC):
    """What a plug package provides to run the contract suite."""

    host: Host
    plug: Plug
    channel: Channel
    recorder: RecorderHook
    #: username (nick, localpart) the human appears under on the network
    human_name: str
    #: formats the human's client can see (subset of bold, italic, underline, strike, code)
    formats: frozenset[str] = frozenset({"bold", "italic"})

    @abc.abstractmethod
    async def human_say(self, text: str) -> None: ...

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
        """The first thing the human saw in the channel matching `predicate` (waits for it)."""


def token(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.mark.anyio
class PlugContract:
    """Subclass with a `contract_env` fixture; every test here then runs against the plug."""

    async def test_receive_text(self, contract_env: ContractEnv) -> None:
        env = contract_env
        word = token("hello")
        await env.human_say(f"{word} from the human")
        got = await env.recorder.wait_for(
            lambda r: r.sent.text is not None and word in r.sent.text.plain, timeout=20)
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
        got = await env.recorder.wait_for(
            lambda r: r.sent.text is not None and word in r.sent.text.plain, timeout=20)
        assert got.sent.action
        assert got.sent.text.plain == word

    async def test_receive_join_and_leave(self, contract_env: ContractEnv) -> None:
        env = contract_env
        if not env.plug.capabilities.joins:
            pytest.skip("the plug declares that its network has no joins")  # pragma: no cover
        start = len(env.recorder.received)
        await env.human_leave()
        left = await env.recorder.wait_for(
            lambda r: r in env.recorder.received[start:] and r.sent.left, timeout=20)
        assert left.sent.channel == env.channel
        assert any(env.human_name in (u.username or "", u.id or "") for u in left.sent.left)
        await env.human_join()
        joined = await env.recorder.wait_for(
            lambda r: r in env.recorder.received[start:] and r.sent.joined, timeout=20)
        assert any(env.human_name in (u.username or "", u.id or "") for u in joined.sent.joined)

    async def test_put_text_reaches_the_human(self, contract_env: ContractEnv) -> None:
        env = contract_env
        word = token("put")
        receipts = await env.host.put(env.channel, Message(
            text=f"{word} says hi", user=User(id="x", username="alice", real_name="Alice")))
        assert receipts, "put returned no receipt"
        assert all(r.channel == env.channel and r.id for r in receipts)
        seen = await env.human_sees(lambda s: s.kind == "message" and word in s.plain)
        assert f"{word} says hi" in seen.plain

    async def test_put_action(self, contract_env: ContractEnv) -> None:
        env = contract_env
        word = token("dances")
        await env.host.put(env.channel, Message(text=word, action=True,
                                                user=User(id="x", username="alice")))
        seen = await env.human_sees(lambda s: s.kind == "message" and word in s.plain)
        assert seen.action or "alice" in seen.plain

    async def test_put_formatting(self, contract_env: ContractEnv) -> None:
        env = contract_env
        for fmt in sorted(env.formats):
            word = token(fmt)
            text = RichText([Segment("plain "), Segment(word, **{fmt: True}), Segment(" end")])
            await env.host.put(env.channel, Message(text=text, user=User(id="x", username="bob")))
            seen = await env.human_sees(lambda s, w=word: s.kind == "message" and w in s.plain)
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
            got = await env.human_sees(lambda s, i=i: s.kind == "message" and f"{word} {i}" in s.plain)
            seen.append(got.plain)
        assert [s.split(word)[1].strip() for s in seen] == [str(i) for i in range(5)]

    async def test_own_messages_are_known_as_echoes(self, contract_env: ContractEnv) -> None:
        env = contract_env
        word = token("echo")
        receipts = await env.host.put(env.channel, Message(text=word, user=User(id="x", username="dave")))
        await env.human_sees(lambda s: word in s.plain)
        marker = token("after")
        await env.human_say(marker)
        await env.recorder.wait_for(lambda r: r.sent.text is not None and marker in r.sent.text.plain)
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
        await env.human_sees(lambda s: word in s.plain)
        await env.host.edit(receipts[0], Message(text=f"{word} second version",
                                                 user=User(id="x", username="erin")))
        if env.plug.capabilities.edit:
            seen = await env.human_sees(lambda s: s.kind == "edit" and "second" in s.plain)
            assert seen.target == receipts[0].id
        else:
            seen = await env.human_sees(lambda s: s.kind == "message" and "second" in s.plain)
            assert "second" in seen.plain

    async def test_delete(self, contract_env: ContractEnv) -> None:
        env = contract_env
        word = token("gone")
        receipts = await env.host.put(env.channel, Message(text=word, user=User(id="x", username="fay")))
        await env.human_sees(lambda s: word in s.plain)
        deleted = await env.host.delete(receipts[0])
        if env.plug.capabilities.delete:
            assert deleted
            seen = await env.human_sees(lambda s: s.kind == "delete" and s.target == receipts[0].id)
            assert seen.target == receipts[0].id
        else:
            assert deleted is False

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
