"""The media proxy: Matrix files as links that people without a Matrix account can open.

Since Matrix 1.11 a file's download needs an access token, so an ``mxc://`` URI, or a plain
download link, is of no use on IRC. The proxy gives each file a signed, expiring link on the
host's HTTP listener (`Host.public_link`: under ``[http] public_url``, valid ``[http]
link_days``) and, when someone opens it, streams the file from the homeserver's authenticated
media API with the bridge's token, chunk by chunk, never holding it whole.

What it serves is user content, so it is served as such: ``nosniff``, a sandboxing
Content-Security-Policy, and ``inline`` only for image, audio and video types browsers show
safely (not SVG, not HTML); everything else is an ``attachment``.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

from chanmux import Request, Response, Route

from .client import HomeserverUnavailable, MatrixClient, MatrixError

#: Seconds a request for a file is retried while the homeserver does not answer; the person
#: who opened the link is waiting, so this is short.
RETRY_FOR = 3.0
#: Characters of a file name kept in a link and in the Content-Disposition header.
MAX_NAME = 150

#: Types browsers show in the page without running anything in them.
INLINE_TYPES = frozenset({
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wav",
    "audio/wave", "audio/x-wav", "audio/flac", "audio/x-flac",
})

#: Headers of every file served: no type sniffing, no script, no plugin, no referrer.
SAFE_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy",
     "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; "
     "style-src 'unsafe-inline'"),
    ("Referrer-Policy", "no-referrer"),
)

_SERVER = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]+\Z")
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
_MEDIA_TYPE = re.compile(rf"\s*({_TOKEN}/{_TOKEN})\s*(?:;.*)?\Z", re.DOTALL)


def split_mxc(mxc: str) -> tuple[str, str] | None:
    """(server, media id) of an ``mxc://server/id`` URI, or None when it is not one."""
    if not mxc.startswith("mxc://"):
        return None
    server, _, media_id = mxc[6:].partition("/")
    return (server, media_id) if valid(server, media_id) else None


def valid(server: str, media_id: str) -> bool:
    """True for a server name and media id as the Matrix spec allows them."""
    return _SERVER.match(server) is not None and _MEDIA_ID.match(media_id) is not None


def clean_name(name: str | None) -> str:
    """A file name safe to show and to put in a URL path: no control or formatting
    characters (a right-to-left override could make ``gpj.exe`` look like ``exe.jpg``), no
    path separators, at most `MAX_NAME` characters; ``file`` when nothing is left."""
    text = (name or "").encode("utf-8", "replace").decode("utf-8")
    kept = "".join("_" if c in "/\\" else " " if unicodedata.category(c) in ("Zl", "Zp")
                   else c for c in text if unicodedata.category(c)[0] != "C")
    kept = kept.strip()[:MAX_NAME].strip()
    return kept if kept not in ("", ".", "..") else "file"


def media_type(content_type: str | None) -> str:
    """The ``type/subtype`` of a Content-Type header, lower case (parameters dropped);
    ``application/octet-stream`` when there is none or it is not one."""
    found = _MEDIA_TYPE.match(content_type or "")
    return found.group(1).lower() if found else "application/octet-stream"


def disposition(content_type: str, filename: str | None) -> str:
    """The Content-Disposition of a file (RFC 6266): ``inline`` for `INLINE_TYPES`, else
    ``attachment``; the name as an ASCII fallback and in full as ``filename*``."""
    name = clean_name(filename)
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in name)
    kind = "inline" if content_type in INLINE_TYPES else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def file_headers(content_type: str, filename: str | None) -> tuple[tuple[str, str], ...]:
    """Every header a served file carries besides its type and length."""
    return (*SAFE_HEADERS, ("Content-Disposition", disposition(content_type, filename)))


async def _nothing() -> AsyncIterator[bytes]:
    """The body of an answer to HEAD: none (its length is the file's)."""
    nothing: tuple[bytes, ...] = ()
    for chunk in nothing:
        yield chunk


class MediaProxy:
    """Links to the files of plug `plug` and the route that serves them.

    `client` is the plug's way to its connected client (raising HomeserverUnavailable while
    it has none), `public_link` the host's (None when the bridge gives out no links).
    """

    def __init__(self, plug: str, *, client: Callable[[], MatrixClient],
                 public_link: Callable[[str], str | None], log: logging.Logger,
                 retry_for: float = RETRY_FOR) -> None:
        self.plug = plug
        self.client = client
        self.public_link = public_link
        self.log = log
        self.retry_for = retry_for
        self.prefix = f"/_chanmux/matrix/{quote(plug, safe='')}/media"

    def path(self, server: str, media_id: str, filename: str | None) -> str:
        """The path (percent-encoded, as a request carries it) that serves a file."""
        parts = (server, media_id, clean_name(filename))
        return self.prefix + "".join(f"/{quote(part, safe='')}" for part in parts)

    def link(self, mxc: str, filename: str | None) -> str | None:
        """The public link of the file at `mxc`, shown as `filename`: signed, it expires
        after ``[http] link_days``. None when the bridge gives out no links (no ``[http]
        public_url``) or `mxc` is not a valid ``mxc://`` URI."""
        parts = split_mxc(mxc)
        if parts is None:
            return None
        return self.public_link(self.path(*parts, filename))

    def routes(self) -> list[Route]:
        return [Route("GET", self.prefix + "/{server}/{media_id}/{filename}", self.serve,
                      signed=True)]

    async def serve(self, request: Request) -> Response:
        """The file, streamed from the homeserver; 404 when the homeserver has no such file,
        503 while it cannot be reached (or the plug is not connected), 502 when it refuses."""
        server, media_id = request.params["server"], request.params["media_id"]
        filename = request.params["filename"]
        if not valid(server, media_id):
            return Response.text("There is no such file.\n", 404)
        mxc = f"mxc://{server}/{media_id}"
        try:
            download = await self.client().open_download(server, media_id,
                                                         retry_for=self.retry_for)
        except HomeserverUnavailable as exc:
            self.log.info("media: cannot fetch %s: %s", mxc, exc)
            return Response.text("The Matrix homeserver cannot be reached right now; "
                                 "try again later.\n", 503)
        except MatrixError as exc:
            if exc.status in (400, 404):
                self.log.debug("media: %s: %s", mxc, exc)
                return Response.text("The Matrix homeserver does not have this file "
                                     "(any more).\n", 404)
            if exc.status == 401:
                self.log.info("media: cannot fetch %s while not logged in: %s", mxc, exc)
                return Response.text("The bridge is not logged in to its Matrix homeserver "
                                     "right now; try again later.\n", 503)
            self.log.warning("media: the homeserver refused %s: %s", mxc, exc)
            return Response.text(f"The Matrix homeserver refused this file (HTTP "
                                 f"{exc.status}).\n", 502)
        content_type = media_type(download.content_type)
        headers = file_headers(content_type, filename)
        if request.method == "HEAD":
            await download.aclose()
            return Response(stream=_nothing(), length=download.length,
                            content_type=content_type, headers=headers)
        return Response(stream=download.chunks, length=download.length,
                        content_type=content_type, headers=headers)


__all__ = ["INLINE_TYPES", "MediaProxy", "clean_name", "disposition", "file_headers",
           "media_type", "split_mxc"]
