"""The host routes messages, isolates failing hooks and plugs, and supervises connections."""

import logging

import anyio
import pytest

from chanmux import Message, SentMessage, State
from chanmux.testing import run_host

import core_helpers as helpers

pytestmark = pytest.mark.anyio
MODULES = [("test-hooks", helpers.module())]


def two_plugs(**hooks):
    return {
        "plugs": {"a": {"type": "memory"}, "b": {"type": "memory"}},
        "channels": {"in": {"plug": "a", "source": "#in"}, "out": {"plug": "b", "source": "#out"}},
        "hooks": {"rec": {"type": "recorder"}, **hooks},
        "host": {"hook_timeout": 1.0, "reconnect_min": 0.01, "reconnect_max": 0.05},
    }


async def test_received_messages_reach_on_receive_and_echoes_are_known():
    async with run_host(two_plugs(relay={"type": "relay"}), modules=MODULES) as host:
        a, b, rec = host.plugs["a"], host.plugs["b"], host.hooks["rec"]
        sent = await a.inject("#in", "hello there")
        got = await rec.wait_for(lambda r: r.sent.id == sent.id)
        assert got.sent.text.plain == "hello there" and got.source is got.sent
        await b.wait_for(lambda: b.texts("#out") == ["hello there"])
        echo = await rec.wait_for(lambda r: r.sent.channel.plug == "b")
        assert echo.is_echo and host.is_echo(echo.sent)
        assert echo.source.text.plain == "hello there"
        await host.wait_idle()
        assert b.texts() == ["hello there"]


async def test_before_put_can_change_or_drop_a_message():
    async with run_host(two_plugs(shout={"type": "shout"}), modules=MODULES) as host:
        b = host.plugs["b"]
        await host.put(host.channels["out"], Message(text="quiet"))
        assert await host.put(host.channels["out"], Message(text="drop")) == []
        assert b.texts() == ["QUIET"]


async def test_a_hook_that_raises_does_not_stop_the_others(caplog):
    caplog.set_level(logging.ERROR)
    async with run_host(two_plugs(bad={"type": "failing", "priority": 1}), modules=MODULES) as host:
        a, rec = host.plugs["a"], host.hooks["rec"]
        for i in range(3):
            await a.inject("#in", f"m{i}")
        await rec.wait_until(lambda: len(rec.received) == 3)
        await host.wait_idle()
    assert "bad: on_receive failed" in caplog.text
    assert "this hook is broken" in caplog.text


async def test_a_close_that_hangs_is_cut_at_close_timeout_and_the_rest_stop(caplog):
    """`[host] close_timeout` bounds each close; the other components still close and save."""
    caplog.set_level(logging.ERROR)
    config = two_plugs(stuck={"type": "stuck"})
    config["host"]["close_timeout"] = 0.2
    async with run_host(config, modules=MODULES) as host:
        assert host.stop_budget() == pytest.approx(0.2 * (2 + 2 * 2) + 30.0)  # 2 hooks, 2 plugs
        b = host.plugs["b"]
    assert "stuck: failed to close" in caplog.text
    assert b.state is State.stopped and host.stopped.is_set()


async def test_a_hook_that_hangs_is_timed_out_and_the_others_go_on(caplog):
    caplog.set_level(logging.ERROR)
    async with run_host(two_plugs(stuck={"type": "hanging"}), modules=MODULES) as host:
        a, rec = host.plugs["a"], host.hooks["rec"]
        await a.inject("#in", "first")
        await a.inject("#in", "second")
        await rec.wait_until(lambda: len(rec.received) == 2)
        await host.wait_idle(timeout=10)
        assert [r.sent.text.plain for r in rec.received] == ["first", "second"]
    assert "stuck: on_receive timed out after 1.0s" in caplog.text


async def test_messages_of_each_channel_keep_their_order_under_concurrency():
    config = two_plugs()
    config["host"]["lanes"] = 4
    async with run_host(config) as host:
        a, rec = host.plugs["a"], host.hooks["rec"]
        sources = [f"#c{i}" for i in range(8)]

        async def talk(source):
            for n in range(50):
                await a.inject(source, f"{source} {n}")

        async with anyio.create_task_group() as tg:
            for source in sources:
                tg.start_soon(talk, source)
        await rec.wait_until(lambda: len(rec.received) == 400)
        for source in sources:
            got = [r.sent.text.plain for r in rec.received if r.sent.channel.source == source]
            assert got == [f"{source} {n}" for n in range(50)]


async def test_a_failed_plug_is_reconnected_and_the_others_keep_working(caplog):
    """Hooks hear of the outage through on_plug_state; the log says why and when it retries."""
    caplog.set_level(logging.INFO)
    async with run_host(two_plugs(relay={"type": "relay"}), modules=MODULES) as host:
        a, b, rec = host.plugs["a"], host.plugs["b"], host.hooks["rec"]
        b.fail_next_opens(2)
        b.fail("network went away")
        await rec.wait_until(lambda: ("b", "failed", "ConnectionResetError: network went away")
                             in rec.states)
        await a.inject("#in", "while b is down")
        await rec.wait_for(lambda r: r.sent.text and r.sent.text.plain == "while b is down")
        await b.wait_for(lambda: b.state is State.active and b.opens == 4, timeout=10)
        assert a.state is State.active and a.opens == 1
        await a.inject("#in", "after b is back")
        await b.wait_for(lambda: "after b is back" in b.texts())
    assert "b: disconnected (ConnectionResetError: network went away); reconnecting in" in caplog.text
    assert "b: disconnected (ConnectionRefusedError: b: refused (test)); reconnecting in" in caplog.text
    assert "(attempt 3)" in caplog.text


async def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    async with run_host(two_plugs()) as host:
        host.settings = type(host.settings)(reconnect_min=1, reconnect_max=30)
        delays = [host.backoff(n) for n in range(1, 10)]
        for n, delay in enumerate(delays, start=1):
            base = min(30, 2 ** (n - 1))
            assert base * 0.5 <= delay <= base
        assert max(delays) <= 30


async def test_ctrl_c_equivalent_stop_closes_hooks_then_plugs():
    async with run_host(two_plugs()) as host:
        await host.stop()
        assert all(p.state is State.stopped for p in host.plugs.values())
        assert all(h.state is State.stopped for h in host.hooks.values())


async def test_lookups_are_answered_by_the_owning_plug():
    config = two_plugs()
    config["plugs"]["a"]["titles"] = {"#in": "The input"}
    config["plugs"]["b"]["private"] = ["alice"]
    async with run_host(config) as host:
        assert await host.channel_title(host.channels["in"]) == "The input"
        assert await host.channel_title(host.channels["out"]) == "#out"
        assert await host.channel_is_private(host.plugs["b"].channel("alice")) is True
        assert await host.private_channels("b") == [host.plugs["b"].channel("alice")]
        assert host.channels["in"] in await host.public_channels("a")
        members = await host.channel_members(host.channels["in"])
        assert [m.username for m in members] == ["bridge"]
        assert await host.channel_link(host.channels["in"]) is None


async def test_edits_go_in_place_or_as_marked_new_messages():
    config = two_plugs()
    config["plugs"]["b"]["edit"] = False
    async with run_host(config) as host:
        a, b = host.plugs["a"], host.plugs["b"]
        [ra] = await host.put(host.channels["in"], Message(text="v1"))
        await host.edit(ra, Message(text="v2"))
        assert [e.msg.text.plain for e in a.edits] == ["v2"]
        [rb] = await host.put(host.channels["out"], Message(text="v1"))
        await host.edit(rb, Message(text="v2"))
        assert [e.msg.text.plain for e in b.edits] == []
        last = b.sent[-1].msg
        assert last.edited and last.edit_of.id == rb.id and last.text.plain == "v2"
        assert await host.delete(ra) is True
        assert a.deletes[0].receipt.id == ra.id


async def test_before_receive_can_change_or_drop_what_hooks_see():
    async with run_host(two_plugs(censor={"type": "censor", "priority": 1}), modules=MODULES) as host:
        a, rec = host.plugs["a"], host.hooks["rec"]
        await a.inject("#in", "a secret")
        await a.inject("#in", "hello")
        got = await rec.wait_for(lambda r: True)
        assert got.sent.text.plain == "[checked] hello"
        await host.wait_idle()
        assert len(rec.received) == 1


async def test_chanmux_metadata_tables_are_created_at_start(tmp_path):
    import sqlalchemy as sa

    config = two_plugs()
    async with run_host(config, path=tmp_path / "bridge.toml",
                        modules=[("tables", helpers.metadata_module())]) as host:
        assert host.store.url == f"sqlite:///{tmp_path / 'bridge.sqlite'}"
        names = await host.store.run(lambda: sa.inspect(host.store.engine).get_table_names())
    assert {"plugin_things", "chanmux_state"} <= set(names)


async def test_the_host_runs_on_postgresql(postgres_url):
    config = two_plugs(relay={"type": "relay"})
    config["database"] = {"url": postgres_url}
    async with run_host(config, modules=MODULES) as host:
        await host.store.set_state("test", "k", [1, 2])
        await host.plugs["a"].inject("#in", "via postgres")
        await host.plugs["b"].wait_for(lambda: host.plugs["b"].texts() == ["via postgres"])
        assert await host.store.get_state("test", "k") == [1, 2]


async def test_a_memory_plug_plays_its_script_like_people_talking():
    config = two_plugs()
    config["plugs"]["a"]["script"] = [
        {"channel": "#in", "user": "alice", "text": "hi all", "after": 0},
        {"channel": "#in", "user": "bob", "text": "waves", "action": True, "after": 0}]
    async with run_host(config) as host:
        rec = host.hooks["rec"]
        await rec.wait_until(lambda: len(rec.received) == 2)
        first, second = rec.received
        assert (first.sent.user.username, first.sent.text.plain) == ("alice", "hi all")
        assert second.sent.action and second.sent.user.username == "bob"


async def test_on_handled_is_called_once_every_hook_has_handled_the_message():
    async with run_host(two_plugs(relay={"type": "relay"}), modules=MODULES) as host:
        handled = anyio.Event()
        sent = host.plugs["a"].user("zed")
        from chanmux import SentMessage

        msg = SentMessage(id="x1", channel=host.channels["in"], text="ack me", user=sent)
        await host.receive(msg, on_handled=handled.set)
        with anyio.fail_after(10):
            await handled.wait()
        assert host.plugs["b"].texts() == ["ack me"]


async def test_on_handled_waits_for_every_hold_taken_for_the_message():
    """A hook that keeps a message's delivery for later holds back `on_handled` (so a plug
    does not move its resume point past it) until the delivery is done, including holds
    taken later on the message's behalf in another task."""
    from chanmux import SentMessage

    async with run_host(two_plugs(holder={"type": "holder"}), modules=MODULES) as host:
        holder = host.hooks["holder"]
        handled: list[str] = []
        for n in (1, 2):
            await host.receive(SentMessage(id=f"h{n}", channel=host.channels["in"], text=f"m{n}",
                                           user=host.plugs["a"].user("zed")),
                               on_handled=lambda n=n: handled.append(f"h{n}"))
        await host.receive(SentMessage(id="h3", channel=host.channels["in"], text="untracked",
                                       user=host.plugs["a"].user("zed")))
        await host.wait_idle()
        first, second, untracked = holder.holds
        assert handled == [] and first.held and not untracked.held
        with second.active():
            later = host.hold()             # e.g. a plug's put, run by the hook's own task
        second.release()
        assert handled == []
        later.release()
        later.release()                     # twice is harmless
        assert handled == ["h2"]
        first.release()
        assert handled == ["h2", "h1"]
    assert host.hold().held is False        # outside any message: a hold that does nothing


async def test_a_message_waits_only_for_puts_started_before_it():
    """Echo resolution waits for puts under way when a message arrives (its put's reply may be
    late), never for puts started after it: under steady traffic into a channel there may
    always be one under way, and the message would stall."""
    config = {"plugs": {"g": {"type": "gated", "echo": False}},
              "channels": {"x": {"plug": "g", "source": "#x"}},
              "hooks": {"rec": {"type": "recorder"}}}
    async with run_host(config, modules=[("gated", helpers.gated_module())]) as host:
        g, rec, chan = host.plugs["g"], host.hooks["rec"], host.channels["x"]
        async with anyio.create_task_group() as tg:
            tg.start_soon(host.put, chan, Message(text="first put"))
            await g.wait_for(lambda: len(g.gates) == 1)
            await g.inject("#x", "said meanwhile")
            await anyio.wait_all_tasks_blocked()
            assert rec.received == []            # it may be the first put's echo: it waits
            g.gates[0].set()
            tg.start_soon(host.put, chan, Message(text="second put"))
            await g.wait_for(lambda: len(g.gates) == 2)
            got = await rec.wait_for(lambda r: r.sent.text.plain == "said meanwhile")
            assert not got.is_echo and not g.gates[1].is_set()
            g.gates[1].set()


async def test_an_echo_waiting_for_a_slow_put_is_not_cut_by_the_hook_timeout(caplog):
    """The regression behind test_traffic's flake: on a loaded machine a Matrix put's reply
    came after its echo and after `hook_timeout`, and the lane's watchdog cancelled the wait
    ("waiting for a put to finish timed out"), handing the echo on as if someone had said it.
    Waiting for a put is bounded by the put timeout, not by the hooks' timeout."""
    import logging

    caplog.set_level(logging.ERROR)
    config = {"plugs": {"g": {"type": "gated"}},
              "channels": {"x": {"plug": "g", "source": "#x"}},
              "hooks": {"rec": {"type": "recorder"}},
              "host": {"hook_timeout": 0.1, "put_timeout": 30.0}}
    async with run_host(config, modules=[("gated", helpers.gated_module())]) as host:
        g, rec, chan = host.plugs["g"], host.hooks["rec"], host.channels["x"]
        g.echo_first = True                     # the network's echo overtakes the put's reply
        async with anyio.create_task_group() as tg:
            tg.start_soon(host.put, chan, Message(text="slow reply"))
            await g.wait_for(lambda: len(g.gates) == 1)
            await anyio.sleep(0.5)              # the condition under test: 5 hook timeouts pass
            assert rec.received == []           # the echo still waits for its put
            g.gates[0].set()
        got = await rec.wait_for(lambda r: r.sent.text.plain == "slow reply")
        assert got.is_echo
    assert "timed out" not in caplog.text


def test_add_channel_names_a_channel_and_refuses_a_taken_name():
    from chanmux import Channel, ConfigError
    from chanmux.testing import make_host

    host = make_host(two_plugs())
    virtual = host.add_channel("virt:main", Channel("virt", "main"))
    assert host.channel("virt:main") == virtual and host.channel_name(virtual) == "virt:main"
    assert host.add_channel("virt:main", Channel("virt", "main")) == virtual   # the same again
    with pytest.raises(ConfigError, match='the name "in" is taken by a:#in'):
        host.add_channel("in", Channel("virt", "other"))


async def test_rows_a_hook_adds_while_closing_are_written(tmp_path):
    """Batch writers stop with the host's tasks, before hooks and plugs close; what they add
    while closing (a last position, the ids of a last echo) is still written."""
    import types

    import sqlalchemy as sa

    from chanmux import Hook, hookimpl

    class Closer(Hook):
        def on_load(self):
            self.writer = self.host.store.writer("closer", lambda conn, rows: conn.execute(
                sa.text("insert into plugin_things (id) values (:id)"), [{"id": r} for r in rows]))

        async def close(self):
            self.writer.add(42)

    mod = types.ModuleType("chanmux_test_closer")
    mod.chanmux_hook_types = hookimpl(lambda: {"closer": Closer})
    modules = [("tables", helpers.metadata_module()), ("closer", mod)]
    async with run_host(two_plugs(closer={"type": "closer"}), path=tmp_path / "c.toml",
                        modules=modules):
        pass
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("select id from plugin_things")).scalars().all() == [42]
    engine.dispose()


async def test_a_failure_no_retry_fixes_is_said_once_and_retried_slowly(caplog):
    """A plug raising ActionRequired (a wrong password) is logged once, as an ERROR that says
    what to change, however often it is retried; retried every reconnect_max seconds; and
    the plug connects once the problem is gone, saying so."""
    import logging

    from chanmux import ActionRequired

    caplog.set_level(logging.INFO)
    cfg = two_plugs()
    cfg["host"] = {"reconnect_min": 0.001, "reconnect_max": 0.01}
    async with run_host(cfg) as host:
        a = host.plugs["a"]
        first = host.plug_connection("a")
        a.fail_next_opens(5, ActionRequired("the server refuses the password: check plugs.a.password"))
        a.fail("logged out")
        with anyio.fail_after(30):
            await host.until_ready("a", newer_than=first)
        assert a.opens == 7
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["a: the server refuses the password: check plugs.a.password; trying again "
                      "every 0.01s until that is fixed"]
    assert "a: still failing (the server refuses the password" in caplog.text
    assert "a: connected (the problem reported before is solved)" in caplog.text


async def test_a_failure_inside_a_task_group_is_logged_by_its_real_cause(caplog):
    import logging

    caplog.set_level(logging.WARNING)
    cfg = two_plugs()
    cfg["host"] = {"reconnect_min": 0.001, "reconnect_max": 0.01}
    async with run_host(cfg) as host:
        a = host.plugs["a"]
        group = ExceptionGroup("unhandled errors in a TaskGroup", [ConnectionResetError("peer reset")])
        first = host.plug_connection("a")
        a.fail_next_opens(1, group)
        a.fail("first")
        with anyio.fail_after(30):
            await host.until_ready("a", newer_than=first)
    assert "a: disconnected (ConnectionResetError: peer reset)" in caplog.text
    assert "ExceptionGroup" not in caplog.text


def test_plugs_check_the_whole_config_at_load_and_every_problem_is_said_at_once(tmp_path):
    """`Plug.on_load` (0.2.3) runs once every plug and hook exists; its ConfigError issues
    are reported with the hooks' and the file's other problems, before anything connects."""
    import types

    from chanmux import ConfigError, hookimpl
    from chanmux.testing import MemoryPlug, make_host

    class Picky(MemoryPlug):
        def on_load(self):
            others = sorted(n for n in self.host.plugs if n != self.name)
            raise ConfigError([(f"plugs.{self.name}.network", f"cannot share a network with {others}")])

    mod = types.ModuleType("chanmux_test_picky")
    mod.chanmux_plug_types = hookimpl(lambda: {"picky": Picky})
    cfg = two_plugs()
    cfg["plugs"].update(p={"type": "picky"}, q={"type": "picky"})
    with pytest.raises(ConfigError) as raised:
        make_host(cfg, path=tmp_path / "c.toml", modules=[("picky", mod)])
    assert sorted(raised.value.issues) == [
        ("plugs.p.network", "cannot share a network with ['a', 'b', 'q']"),
        ("plugs.q.network", "cannot share a network with ['a', 'b', 'p']")]


async def test_echoes_no_hook_listens_to_are_dropped_before_any_lane_work(tmp_path):
    """A relay that ignores the networks' copies of its puts says so (`Hook.echoes = False`);
    with no hook listening to them, the host drops them on arrival: only what people said
    goes through a lane. A hook that listens (the recorder) still gets every echo."""
    cfg = {
        "plugs": {"a": {"type": "memory"}, "b": {"type": "memory"}},
        "channels": {"in": {"plug": "a", "source": "#in"}, "out": {"plug": "b", "source": "#out"}},
        "hooks": {"relay": {"type": "queued-relay"}},
    }
    async with run_host(cfg, path=tmp_path / "x.toml", modules=MODULES) as host:
        a, b = host.plugs["a"], host.plugs["b"]
        for n in range(5):
            await a.inject("#in", f"m{n}")
        await b.wait_for(lambda: len(b.sent) == 5)
        await host.wait_idle()
        assert host.lanes.submitted == 5  # the five echoes from b never reached a lane
    cfg["hooks"]["rec"] = {"type": "recorder"}
    async with run_host(cfg, path=tmp_path / "y.toml", modules=MODULES) as host:
        a, b, rec = host.plugs["a"], host.plugs["b"], host.hooks["rec"]
        await a.inject("#in", "seen")
        await rec.wait_for(lambda r: r.is_echo and r.sent.channel.plug == "b")


@pytest.fixture
def gc_threshold():
    """Python's collector thresholds as they were, put back after the test."""
    import gc

    before = gc.get_threshold()
    yield gc
    gc.set_threshold(*before)


@pytest.mark.parametrize("start, setting, expected", [
    (700, None, 10_000),     # the default raises Python's
    (700, 0, 700),           # 0 leaves it as it is
    (50_000, None, 50_000),  # an application's higher threshold is never lowered
    (700, 2_500, 2_500),
])
async def test_the_host_raises_the_collectors_threshold_as_configured(gc_threshold, start,
                                                                      setting, expected):
    """Messages on their way are many short-lived objects: a busy bridge at Python's default
    threshold spent a fifth of its CPU in the garbage collector (benchmarks/relay.py)."""
    gc_threshold.set_threshold(start, 10, 10)
    config = two_plugs()
    if setting is not None:
        config["host"]["gc_threshold"] = setting
    async with run_host(config, modules=MODULES):
        assert gc_threshold.get_threshold() == (expected, 10, 10)


async def test_a_lane_working_through_a_backlog_lets_other_tasks_run():
    """A lane takes the messages waiting for it without a task switch each (issue 16), but a
    backlog never holds the event loop for long: other tasks (a plug answering PING, the
    HTTP listener) get turns while it is worked through."""
    async with run_host(two_plugs(busy={"type": "busy"}), modules=MODULES) as host:
        a, busy = host.plugs["a"], host.hooks["busy"]
        channel, human = a.channel("#in"), a.user("human")
        for i in range(50):  # as a plug hands over a burst it read at once
            await host.receive(SentMessage(id=f"m{i}", channel=channel, text=f"line {i}",
                                           user=human))
        seen = []
        while busy.handled < 50:
            seen.append(busy.handled)
            await anyio.lowlevel.checkpoint()
        assert [n for n in seen if 0 < n < 50], seen
        await host.wait_idle()
