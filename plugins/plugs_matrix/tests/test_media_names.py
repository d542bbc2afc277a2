"""Property tests of what the media proxy makes from names people choose: the file name in a
link and in the Content-Disposition header, and the Content-Type it passes on.

Whatever the name (quotes, line breaks, control and bidi characters, lone surrogates from a
JSON escape, path separators, dot segments), the header stays one valid line that says the
name, and the link's path is served by the proxy's own route with the name intact.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

import h11
from hypothesis import example, given
from hypothesis import strategies as st

from chanmux_matrix.client import HomeserverUnavailable, MatrixClient
from chanmux_matrix.media import (
    INLINE_TYPES,
    MAX_NAME,
    MediaProxy,
    clean_name,
    disposition,
    media_type,
    split_mxc,
)

#: RFC 6266 with RFC 8187's attr-char (percent escapes included) after ``UTF-8''``.
HEADER = re.compile(r"(inline|attachment); filename=\"([ !#$&-\[\]-~]*)\"; "
                    r"filename\*=UTF-8''((?:[A-Za-z0-9!#$&+.^_`|~-]|%[0-9A-F]{2})*)\Z")
TRICKY = ['"', "\\", "\r\n", "a\rb", "a\nb", "..", ".", "/", "../../etc/passwd", "%0d%0a",
          "\u202egpj.exe", "\x00", "a\u2028b", "\ud800", "x" * 1000, " ", "", "é\u0301",
          'evil"; filename="x.html', "%", "%25", "?s=1#x", "\x7f\x85"]
names = st.one_of(st.sampled_from(TRICKY), st.text(), st.text(st.characters(exclude_categories=())))
content_types = st.one_of(
    st.sampled_from(sorted(INLINE_TYPES) + ["image/svg+xml", "text/html", "application/pdf",
                                           "IMAGE/PNG", "image/png; charset=x", "", "nonsense",
                                           "text/html\r\nX-Evil: 1"]),
    st.text())
servers = st.sampled_from(["chanmux.test", "localhost:8448", "[::1]:8008", "1.2.3.4",
                           "matrix-01.example.org"])
media_ids = st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)


def no_client() -> MatrixClient:
    raise HomeserverUnavailable("not needed here")


def proxy(public: bool = True) -> MediaProxy:
    import logging

    return MediaProxy("mx", client=no_client, log=logging.getLogger("test"),
                      public_link=lambda path: f"https://bridge.example{path}?e=1&s=x" if public else None)


@given(names)
def test_a_clean_name_is_safe_to_show_and_stays_as_it_is(name):
    clean = clean_name(name)
    assert clean not in ("", ".", "..") and len(clean) <= MAX_NAME
    assert clean == clean.strip() and "/" not in clean and "\\" not in clean
    assert not any(unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")
                   for c in clean)
    assert clean_name(clean) == clean


@given(content_types, names)
@example("image/png", "cat.png")
def test_the_content_disposition_is_one_valid_line_that_says_the_name(content_type, name):
    kind = media_type(content_type)
    value = disposition(kind, name)
    found = HEADER.match(value)
    assert found, value
    assert found.group(1) == ("inline" if kind in INLINE_TYPES else "attachment")
    assert unquote(found.group(3), errors="strict") == clean_name(name)
    assert len(found.group(2)) == len(clean_name(name))
    # an HTTP library takes it (and the type) as header values of one response
    h11.Response(status_code=200, headers=[("Content-Type", kind), ("Content-Disposition", value)])


@given(content_types)
def test_only_what_browsers_show_safely_is_inline(content_type):
    kind = media_type(content_type)
    assert kind == "application/octet-stream" or re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", kind)
    inline = disposition(kind, "f").startswith("inline;")
    assert inline == (kind in INLINE_TYPES)
    assert not (inline and ("svg" in kind or "html" in kind or "xml" in kind))


@given(servers, media_ids, names)
def test_a_link_is_served_by_the_proxy_route_with_the_name_intact(server, media_id, name):
    media = proxy()
    path = media.path(server, media_id, name)
    assert all(segment not in (".", "..") for segment in path.split("/"))
    assert "?" not in path and "#" not in path
    (route,) = media.routes()
    assert route.signed and route.method == "GET"
    assert route.match(path) == {"server": server, "media_id": media_id,
                                 "filename": clean_name(name)}
    assert media.link(f"mxc://{server}/{media_id}", name) == f"https://bridge.example{path}?e=1&s=x"
    assert proxy(public=False).link(f"mxc://{server}/{media_id}", name) is None


@given(st.one_of(st.text(), st.sampled_from(["mxc://", "mxc://server", "mxc://server/",
                                             "mxc://../x", "mxc://s/a/b", "mxc://s/..",
                                             "https://s/x", "mxc://s/id?x", "mxc://s p/id"])))
def test_anything_but_an_mxc_uri_gets_no_link(text):
    parts = split_mxc(text)
    if parts is None:
        assert proxy().link(text, "f") is None
    else:
        assert text == f"mxc://{parts[0]}/{parts[1]}"
        assert "/" not in parts[1] and not parts[0].startswith(".")
