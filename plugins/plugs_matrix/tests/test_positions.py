"""The resume point moves only past events whose messages are done, in order, and what was
done beyond it is skipped when the homeserver sends it again."""

from chanmux_matrix.positions import Positions


def test_the_resume_point_waits_for_every_message_of_a_batch_and_of_earlier_ones():
    p = Positions("t0")
    one = p.begin()
    done_a, done_b = p.track(one, "$a"), p.track(one, "$b")
    p.end(one, "t1")
    two = p.begin()
    done_c = p.track(two, "$c")
    p.end(two, "t2")
    assert p.state() == ("t0", [])
    done_c()                                  # a later batch finishing first moves nothing
    assert p.state() == ("t0", ["$c"])
    done_b()
    assert p.state() == ("t0", ["$b", "$c"])
    done_a()
    assert p.state() == ("t2", []) and p.waiting == 0


def test_events_done_in_the_last_run_are_skipped_once_and_saved_until_passed():
    p = Positions("t0", ["$a"])
    assert p.known("$a") and not p.known("$b")
    assert p.state() == ("t0", ["$a"])
    batch = p.begin()
    done_b = p.track(batch, "$b")
    p.end(batch, "t1")
    assert p.state() == ("t0", ["$a"])
    done_b()
    assert p.state() == ("t1", []) and not p.known("$a")


def test_a_batch_cut_short_holds_the_point_and_its_events_are_not_handed_over_twice():
    p = Positions("t0")
    cut = p.begin()
    done_a = p.track(cut, "$a")
    p.end(cut, None)                          # the connection failed mid-batch
    done_a()
    assert p.state() == ("t0", ["$a"])
    again = p.begin()                         # the same events, fetched again from t0
    assert p.known("$a")
    done_b = p.track(again, "$b")
    p.end(again, "t1")
    assert p.state() == ("t0", ["$a"])
    done_b()
    assert p.state() == ("t1", [])


def test_every_change_is_announced():
    calls = []
    p = Positions("t0", changed=lambda: calls.append(p.state()))
    batch = p.begin()
    done = p.track(batch, "$a")
    p.end(batch, "t1")
    done()
    assert calls[-1] == ("t1", [])
