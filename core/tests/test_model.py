from chanmux import Channel, Message, RichText, SentMessage, User, unique_id


def test_message_text_accepts_str_and_sent_message_has_a_receipt():
    chan = Channel("irc", "#chat")
    sent = SentMessage(id="1", channel=chan, text="hi", user=User(id="u", username="ann"))
    assert isinstance(sent.text, RichText) and sent.text.plain == "hi"
    assert sent.receipt().key == ("irc", "#chat", "1")
    assert isinstance(sent, Message)
    assert sent.clone(text="bye").text.plain == "bye"
    assert type(sent.clone()) is Message


def test_unique_ids_differ():
    assert len({unique_id() for _ in range(1000)}) == 1000


def test_user_display_falls_back():
    assert User(id="x").display == "x"
    assert User(id="x", username="u").display == "u"
    assert User(id="x", username="u", real_name="Real").display == "Real"
