"""No configuration of forwards loops: each message is forwarded once per destination, then
the forwarding stops (IMMP forwarded a->b->a forever, 4,469 messages per second)."""

import pytest

from chanmux.testing import run_host

from forward_helpers import config, settle

pytestmark = pytest.mark.anyio


async def test_anchor_forward_a_to_b_and_b_to_a_does_not_loop(tmp_path):
    cfg = config({"channels": {"a": ["b"], "b": ["a"]}})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        for i in range(5):
            await a.inject("#a", f"from a {i}")
            await b.inject("#b", f"from b {i}")
        await b.wait_for(lambda: len(b.sent) == 5)
        await a.wait_for(lambda: len(a.sent) == 5)
        await settle(host)
        assert sorted(b.texts()) == [f"from a {i}" for i in range(5)]
        assert sorted(a.texts()) == [f"from b {i}" for i in range(5)]
        assert len(host.hooks["rec"].received) == 20


async def test_two_forward_hooks_pointing_at_each_other_do_not_loop(tmp_path):
    cfg = config({"channels": {"a": ["b"]}}, back={"type": "forward", "channels": {"b": ["a"]}})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        await a.inject("#a", "ping")
        await b.inject("#b", "pong")
        await b.wait_for(lambda: b.texts() == ["ping"])
        await a.wait_for(lambda: a.texts() == ["pong"])
        await settle(host)
        assert a.texts() == ["pong"] and b.texts() == ["ping"]


async def test_a_ring_of_forwards_delivers_once_per_hop_and_stops(tmp_path):
    cfg = config({"channels": {"a": ["b"], "b": ["c"], "c": ["a"]}})
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b, c = (host.plugs[n] for n in "abc")
        await a.inject("#a", "round")
        await b.wait_for(lambda: b.texts() == ["round"])
        await settle(host)
        assert a.texts() == [] and c.texts() == [] and b.texts() == ["round"]


async def test_no_loop_even_when_the_host_forgets_its_echoes(tmp_path):
    cfg = config({"channels": {"a": ["b"], "b": ["a"]}},
                 back={"type": "forward", "channels": {"b": ["a"], "a": ["b"]}})
    cfg["host"]["echo_cache"] = 1
    async with run_host(cfg, path=tmp_path / "x.toml") as host:
        a, b = host.plugs["a"], host.plugs["b"]
        for i in range(10):
            await a.inject("#a", f"m{i}")
        await b.wait_for(lambda: len(b.sent) == 20)
        await settle(host)
        assert len(b.sent) == 20 and a.sent == []
