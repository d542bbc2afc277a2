"""A message kept in the database comes back as it was: formatting, names, membership,
attachments and parents by reference; what cannot be kept is dropped, never garbled."""

import json

import pytest

from chanmux import Channel, File, FileKind, Location, Message, Receipt, RichText, Segment, User
from chanmux.codec import dump, load


def roundtrip(msg: Message) -> Message:
    return load(json.loads(json.dumps(dump(msg))))


def test_text_with_formatting_mentions_and_links_comes_back():
    bob = User(id="@bob:x", plug="mx", username="bob", real_name="Bob")
    text = RichText([Segment("hi "), Segment("bold", bold=True, italic=True),
                     Segment(" Bob", mention=bob), Segment(" site", link="https://x.org")])
    msg = Message(text=text, user=User(id="ann", plug="irc", username="ann", real_name="Ann"),
                  action=True, edited=True)
    back = roundtrip(msg)
    assert list(back.text) == list(text) and back.text.plain == "hi bold Bob site"
    assert back.user == msg.user and back.action and back.edited and not back.notice


def test_membership_titles_and_attachments_come_back():
    ann, anna = User(id="a", username="ann"), User(id="a", username="anna")
    msg = Message(user=anna, joined=[ann], left=[anna], renamed=(ann, anna), title="Topic",
                  attachments=[File(title="cat.png", kind=FileKind.image, url="https://x/c.png",
                                    mime="image/png", size=3, fetch=lambda: b"abc"),
                               Location(latitude=1.5, longitude=2.5, name="Here"),
                               Message(text="quoted", user=ann)])
    back = roundtrip(msg)
    assert back.joined == [ann] and back.left == [anna] and back.renamed == (ann, anna)
    assert back.title == "Topic"
    f, loc, quoted = back.attachments
    assert (f.title, f.kind, f.url, f.mime, f.size, f.fetch) == ("cat.png", FileKind.image,
                                                                "https://x/c.png", "image/png", 3, None)
    assert loc == Location(latitude=1.5, longitude=2.5, name="Here")
    assert quoted.text.plain == "quoted" and quoted.user == ann


def test_parents_come_back_as_receipts():
    parent = Receipt(id="$p", channel=Channel("mx", "!room"))
    back = roundtrip(Message(text="re", reply_to=parent, edit_of=parent))
    for got in (back.reply_to, back.edit_of):
        assert isinstance(got, Receipt) and got.key == parent.key


@pytest.mark.parametrize("bad", [[], {"text": 5}, {"user": "x"}, {"renamed": [{}]}])
def test_a_damaged_record_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="kept message"):
        load(bad)


def test_colours_reactions_and_a_leave_reason_come_back():
    from chanmux import Reaction

    text = RichText([Segment("red on blue", color="#FF0000", background="#0000ff"),
                     Segment(" plain")])
    parent = Receipt(id="$m", channel=Channel("mx", "!room"))
    back = roundtrip(Message(text=text, user=User(id="ann"), left=[User(id="ann")],
                             reason="bye", reaction=Reaction("👍", parent, removed=True)))
    assert list(back.text) == list(text) and back.text.segments[0].color == "#ff0000"
    assert back.reason == "bye"
    assert (back.reaction.key, back.reaction.target.id, back.reaction.target.channel,
            back.reaction.removed) == ("👍", "$m", parent.channel, True)


def test_a_colour_is_six_hex_digits():
    with pytest.raises(ValueError, match="a colour is #rrggbb"):
        Segment("x", color="red")
    assert Segment("x", color="#ABCDEF") == Segment("x", color="#abcdef")
    assert not Segment("x", color="#abcdef").same_format(Segment("y"))
