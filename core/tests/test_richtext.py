"""RichText gives plugs what they need to convert and split formatted text."""

from itertools import accumulate

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


# -- split_bytes never raises, stays within the budget, and is linear in work --------------

users = st.builds(lambda name: __import__("chanmux").User(id=name, username=name),
                  st.text(min_size=1, max_size=8))
any_segments = st.lists(
    st.builds(Segment, text=st.text(min_size=0, max_size=30), bold=st.booleans(),
              italic=st.booleans(), underline=st.booleans(), strike=st.booleans(),
              code=st.booleans(), pre=st.booleans(),
              link=st.one_of(st.none(), st.text(min_size=1, max_size=60)),
              mention=st.one_of(st.none(), users)),
    max_size=10)


def overhead_measure(rt: RichText) -> int:
    """Like a plug's format: codes around each formatted segment, a link's URL after it
    (not additive: half of a link still shows the whole URL)."""
    size = 0
    for seg in rt:
        size += len(seg.text.encode()) + 2 * len(seg.flags)
        if seg.link:
            size += len(seg.link.encode()) + 3
    return size


def test_a_character_larger_than_the_limit_goes_alone_instead_of_raising():
    """It raised `ValueError: character ... alone is larger than N bytes`, and a message
    holding one was lost."""
    rt = RichText.plain_text("ab✓cd")
    assert [c.plain for c in rt.split_bytes(2)] == ["ab", "✓", "cd"]
    assert [c.plain for c in rt.split_bytes(0)] == list("ab✓cd")
    assert [c.plain for c in rt.split_bytes(-5)] == list("ab✓cd")
    link = RichText([Segment("see "), Segment("text", link="https://example.org/" + "a" * 500)])
    chunks = link.split_bytes(400, measure=overhead_measure)
    assert RichText.join(chunks) == link
    assert chunks[0].plain == "see " and all(len(c) == 1 for c in chunks[1:])
    assert RichText().split_bytes(10) == []


def test_a_token_longer_than_a_line_is_broken_across_lines():
    rt = RichText([Segment("x" * 1000, bold=True)])
    chunks = rt.split_bytes(300)
    assert [len(c) for c in chunks] == [300, 300, 300, 100]
    assert all(s.bold for c in chunks for s in c)


def test_a_word_too_long_for_any_chunk_is_not_moved_to_a_chunk_of_its_own():
    """Breaking before such a word left a short word alone on a line ("hello 0 ")."""
    rt = RichText.plain_text("hi " + "x" * 1000 + " short words")
    chunks = rt.split_bytes(300)
    assert [len(c) for c in chunks] == [300, 300, 300, 115]
    assert chunks[-1].plain.endswith(" short words")
    assert [c.plain for c in RichText.plain_text("one two three").split_bytes(9)] == \
        ["one two ", "three"]


def test_kept_segments_move_whole_to_the_next_chunk():
    rt = RichText([Segment("some words "), Segment("a link text", link="https://x.example/"),
                   Segment(" and more words")])
    keep = lambda seg: bool(seg.link)  # noqa: E731
    chunks = rt.split_bytes(40, measure=overhead_measure, keep_whole=keep)
    assert RichText.join(chunks) == rt
    assert [c.plain for c in chunks] == ["some words ", "a link text and ", "more words"]
    assert all(overhead_measure(c) <= 40 for c in chunks)
    # a kept segment larger than the limit alone is broken like any text
    big = RichText([Segment("y" * 50, link="u")])
    assert RichText.join(big.split_bytes(20, measure=overhead_measure, keep_whole=keep)) == big


@settings(max_examples=300, deadline=None)
@given(any_segments, st.integers(min_value=-3, max_value=80), st.booleans())
def test_split_bytes_any_text_any_limit(segs, limit, words):
    rt = RichText(segs)
    chunks = rt.split_bytes(limit, words=words)
    assert RichText.join(chunks) == rt
    assert all(chunks) and len(chunks) <= max(1, len(rt))
    for chunk in chunks:
        size = len(chunk.plain.encode())
        assert size <= limit or len(chunk) == 1, (chunk, limit)


@settings(max_examples=300, deadline=None)
@given(any_segments, st.integers(min_value=-3, max_value=120), st.booleans())
def test_split_bytes_with_a_measure_that_is_not_additive(segs, limit, words):
    rt = RichText(segs)
    keep = lambda seg: bool(seg.link) or seg.mention is not None  # noqa: E731
    chunks = rt.split_bytes(limit, measure=overhead_measure, words=words, keep_whole=keep)
    assert RichText.join(chunks) == rt
    assert all(chunks)
    for chunk in chunks:
        assert overhead_measure(chunk) <= limit or len(chunk) == 1, (chunk, limit)
    breaks = set(accumulate(len(c) for c in chunks))
    pos = 0
    for seg in rt:
        if seg.text and keep(seg) and overhead_measure(RichText([seg])) <= limit:
            assert not breaks & set(range(pos + 1, pos + len(seg.text))), "a kept segment was broken"
        pos += len(seg.text)


def test_split_bytes_measures_only_chunk_sized_pieces():
    """No probe measures the whole remaining text (that made a long text quadratic): every
    piece measured is at most about twice as long as a chunk can be."""
    measured: list[int] = []

    def measure(rt: RichText) -> int:
        measured.append(len(rt))
        return len(rt.plain.encode())

    rt = RichText.plain_text("x" * 65536)
    chunks = rt.split_bytes(400, measure=measure)
    assert [len(c) for c in chunks] == [400] * 163 + [336]
    assert max(measured) <= 2 * 400 + 1
    assert sum(measured) < 40 * len(rt)
