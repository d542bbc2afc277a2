"""A membership flood never holds back what people say (`chanmux.membership`).

100k JOIN + QUIT from an IRC server once held a real message back for minutes: each event
waited its turn in a lane and then in every target's delivery queue. Now a membership event
that arrives while another of its channel still waits is folded into it.
"""

from __future__ import annotations

import pytest

from chanmux.lanes import FOLD_BACKLOG
from chanmux.membership import SHOWN
from chanmux.testing import run_host

import core_helpers as helpers

pytestmark = pytest.mark.anyio

MODULES = [("test-hooks", helpers.module())]
FLOOD = 4_000


def config(**hooks):
    return {
        "plugs": {"a": {"type": "memory"}, "b": {"type": "memory"}},
        "channels": {"in": {"plug": "a", "source": "#in"}, "out": {"plug": "b", "source": "#out"}},
        "hooks": {"relay": {"type": "queued-relay"}, "rec": {"type": "recorder"}, **hooks},
        "host": {"reconnect_min": 0.001, "reconnect_max": 0.002, "hook_timeout": 30.0,
                 "lanes": 1},
    }


async def flood(a, count: int) -> None:
    """`count` people join and leave again, and `count` // 4 more join and stay."""
    for i in range(count):
        user = a.user(f"p{i}")
        await a.inject("#in", joined=[user])
        await a.inject("#in", left=[user])
    for i in range(count // 4):
        await a.inject("#in", joined=[a.user(f"stay{i}")])


async def test_a_flood_waiting_for_a_target_folds_into_one_notice(tmp_path):
    """The target is not ready while the flood comes (a homeserver restarting): when it is,
    it gets one notice naming who is really new, then the message said after the flood."""
    async with run_host(config(), path=tmp_path / "x.toml", modules=MODULES) as host:
        a, b = host.plugs["a"], host.plugs["b"]
        gate = b.hold_opens()
        b.fail("restarting")
        await b.wait_for(lambda: b.opens >= 2)
        await flood(a, FLOOD)
        await a.inject("#in", "hello after the flood")
        await host.wait_idle()
        queue = host.hooks["relay"].queues[host.channels["out"]]
        assert len(queue) <= 2                      # the flood is one waiting copy
        gate.set()
        await b.wait_for(lambda: "hello after the flood" in b.texts(), timeout=30)
        notices = [e.msg for e in b.sent if e.msg.joined or e.msg.left]
        assert len(notices) == 1 and not notices[0].left
        names = [u.display for u in notices[0].joined]
        assert len(names) == SHOWN + 1
        assert names[:3] == ["stay0", "stay1", "stay2"]
        assert names[-1] == f"{FLOOD // 4 - SHOWN:,} others"


async def test_a_flood_behind_a_busy_lane_is_one_message_for_the_hooks(tmp_path):
    """Once the lane is behind (FOLD_BACKLOG messages waiting), the flood is folded before any
    hook sees it: the hooks get the first FOLD_BACKLOG events one by one, then one membership
    message for the rest, then the message said after it."""
    cfg = config(gate={"type": "gate", "priority": 1})
    async with run_host(cfg, path=tmp_path / "x.toml", modules=MODULES) as host:
        a, b, rec = host.plugs["a"], host.plugs["b"], host.hooks["rec"]
        gate = host.hooks["gate"]
        await a.inject("#in", "gate")
        await gate.waiting.wait()
        await flood(a, FLOOD)
        await a.inject("#in", "hello after the flood")
        gate.gate.set()
        await b.wait_for(lambda: "hello after the flood" in b.texts(), timeout=30)
        await rec.wait_for(lambda r: r.sent.text is not None
                           and r.sent.text.plain == "hello after the flood")
        from_a = [r.sent for r in rec.received if r.sent.channel.plug == "a"]
        assert [s.text.plain if s.text else "members" for s in from_a] == [
            "gate", *["members"] * (FOLD_BACKLOG + 1), "hello after the flood"]
        folded = from_a[-2]       # the first 100 events were p0..p49 joining and leaving
        assert len(folded.joined) == SHOWN + 1 and not folded.left
        assert folded.joined[-1].display == f"{FLOOD // 4 - SHOWN:,} others"


async def test_a_join_then_a_leave_folded_together_show_nothing(tmp_path):
    async with run_host(config(), path=tmp_path / "x.toml", modules=MODULES) as host:
        a, b = host.plugs["a"], host.plugs["b"]
        gate = b.hold_opens()
        b.fail("restarting")
        await b.wait_for(lambda: b.opens >= 2)
        await flood(a, 50)
        for i in range(50 // 4):
            await a.inject("#in", left=[a.user(f"stay{i}")])
        await a.inject("#in", "only this")
        await host.wait_idle()
        gate.set()
        await b.wait_for(lambda: b.texts() == ["only this"], timeout=30)
        await host.hooks["relay"].queues.wait_idle()
        assert b.texts() == ["only this"]
