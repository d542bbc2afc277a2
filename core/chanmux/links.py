"""Links the bridge gives out: signed, expiring URLs under `[http] public_url`.

Some things a network cannot carry are given to its people as a link instead: a Matrix file
(Matrix media needs an access token since Matrix 1.11, so a plain `mxc://` link is useless on
IRC), the whole text of a message too long for IRC. The listener serves them; each link is
signed with a key kept in the database (links keep working across restarts) and expires after
`[http] link_days`, so a link is not a door into the homeserver for anyone who guesses a
path. Without `public_url` (or a listener) no link is made and callers fall back to what they
did before.

- `Host.public_link(path)`: the signed URL of a path some route serves (a route made with
  ``Route(..., signed=True)`` answers 403 to a request without a valid, unexpired signature).
- `Host.publish_text(owner, text)`: keeps `text` in the table `chanmux_published` and returns
  the link that shows it (`GET /text/{key}`); expired texts are deleted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .http import Request, Response
from .store import metadata

if TYPE_CHECKING:
    from .host import Host

log = logging.getLogger("chanmux.links")

published_table = sa.Table(
    "chanmux_published",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("content_type", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
)

#: Seconds between two deletions of expired texts.
PRUNE_EVERY = 3600.0


class Links:
    """Signs and checks links, and keeps published texts (see the module's docstring)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        http = host.config.http
        self.base = http.public_url.rstrip("/") if http.public_url else None
        self.ttl = http.link_days * 86400
        self._key: bytes | None = None

    @property
    def enabled(self) -> bool:
        return self.base is not None and self._key is not None

    async def start(self) -> None:
        """Load (or make, on the first start) the signing key; delete expired texts."""
        if self.base is None:
            return
        key = await self.host.store.get_state("chanmux", "link_key")
        if not isinstance(key, str):
            key = secrets.token_hex(32)
            await self.host.store.set_state("chanmux", "link_key", key)
        self._key = bytes.fromhex(key)
        await self.prune()

    async def prune(self) -> int:
        now = time.time()

        def delete(conn: Connection) -> int:
            done = conn.execute(published_table.delete().where(published_table.c.expires < now))
            return int(done.rowcount or 0)

        return await self.host.store.transaction(delete)

    def _signature(self, path: str, expires: int) -> str:
        assert self._key is not None
        return hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def sign(self, path: str, ttl: float | None = None) -> str | None:
        """The public URL of `path` (as a route matches it: percent-encoded), valid for
        `ttl` seconds (default `[http] link_days`); None when no public_url is set."""
        if not self.enabled:
            return None
        expires = int(time.time() + (self.ttl if ttl is None else ttl))
        return f"{self.base}{path}?e={expires}&s={self._signature(path, expires)}"

    def refusal(self, request: Request) -> str | None:
        """Why `request` may not have what a signed route serves, or None if it may."""
        if self._key is None:
            return "this bridge gives out no links"
        expires, given = request.query.get("e", [""])[0], request.query.get("s", [""])[0]
        if not expires.isdigit() or not given:
            return "this link is not complete (it lacks its signature)"
        if not hmac.compare_digest(given.encode(), self._signature(request.path, int(expires)).encode()):
            return "this link is not valid"
        if int(expires) < time.time():
            return "this link has expired"
        return None

    async def publish(self, owner: str, text: str, content_type: str = "text/plain; charset=utf-8",
                      ttl: float | None = None) -> str | None:
        """Keep `text` and return the link that serves it, or None when links are off."""
        if not self.enabled:
            return None
        ttl = self.ttl if ttl is None else ttl
        key = secrets.token_urlsafe(18)
        row = {"key": key, "owner": owner, "content_type": content_type, "body": text,
               "expires": time.time() + ttl}
        await self.host.store.transaction(lambda conn: conn.execute(published_table.insert(), row))
        return self.sign(f"/text/{key}", ttl)

    async def serve_text(self, request: Request) -> Response:
        key = request.params["key"]

        def read(conn: Connection) -> tuple[str, str, float] | None:
            c = published_table.c
            found = conn.execute(sa.select(c.content_type, c.body, c.expires).where(c.key == key)).first()
            return None if found is None else (found[0], found[1], found[2])

        found = await self.host.store.transaction(read)
        if found is None or found[2] < time.time():
            return Response.text("This text is no longer kept.\n", 404)
        return Response(200, found[1].encode(), found[0], (("X-Content-Type-Options", "nosniff"),))
