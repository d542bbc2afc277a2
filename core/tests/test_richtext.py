"""RichText gives plugs what they need to convert and split formatted text."""

from hypothesis import given, settings
from hypothesis import strategies as st

from chanmux import RichText, Segment

segments = st.lists(
    st.builds(Segment, text=st.text(min_size=0, max_size=40), bold=st.booleans(),
              italic=st.booleans(), code=st.booleans(),
              link=st.one_of(st.none(), st.just("https://example.org/"))),
    max_size=8)


def test_plain_and_slicing_keep_formatting():
    rt = RichText([Segment("hello ", bold=True), Segment("wörld", italic=True)])
    assert rt.plain == "hello wörld"
    assert len(rt) == 11
    part = rt[3:8]
    assert part.plain == "lo wö"
    assert [(s.text, s.bold, s.italic) for s in part] == [("lo ", True, False), ("wö", False, True)]
    assert rt[-1].plain == "d" and rt[-1].segments[0].italic


def test_normalise_merges_neighbours_and_drops_empty():
    rt = RichText([Segment("a", bold=True), Segment(""), Segment("b", bold=True), Segment("c")])
    assert rt.normalise().segments == (Segment("ab", bold=True), Segment("c"))
    assert rt == RichText([Segment("ab", bold=True), Segment("c")])


def test_lines_split_on_every_kind_of_break():
    rt = RichText([Segment("one\r\ntwo", bold=True), Segment("\nthree\rfour")])
    lines = rt.lines()
    assert [line.plain for line in lines] == ["one", "two", "three", "four"]
    assert lines[1].segments[0].bold


def test_split_bytes_never_breaks_a_character_and_prefers_words():
    rt = RichText.plain_text("héllo wörld ünïcode ✓✓✓")
    chunks = rt.split_bytes(9)
    assert "".join(c.plain for c in chunks) == rt.plain
    for chunk in chunks:
        assert len(chunk.plain.encode()) <= 9
    assert chunks[0].plain == "héllo "


def test_split_bytes_with_a_custom_measure_counts_codes():
    rt = RichText([Segment("bold words here", bold=True)])
    measure = lambda r: sum(len(s.text.encode()) + (2 if s.bold else 0) for s in r)  # noqa: E731
    chunks = rt.split_bytes(8, measure=measure)
    assert all(measure(c) <= 8 for c in chunks)
    assert all(s.bold for c in chunks for s in c)


@settings(max_examples=200, deadline=None)
@given(segments, st.integers(min_value=4, max_value=64))
def test_split_bytes_loses_nothing(segs, limit):
    rt = RichText(segs)
    chunks = rt.split_bytes(limit)
    assert RichText.join(chunks) == rt
    for chunk in chunks:
        assert len(chunk.plain.encode()) <= limit
        chunk.plain.encode("utf-8")


def test_concatenation_and_join():
    rt = RichText.plain_text("a") + Segment("b", bold=True) + "c"
    assert rt.plain == "abc"
    assert RichText.join(["x", "y"], ", ").plain == "x, y"
