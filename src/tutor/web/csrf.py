"""Cross-site request forgery protection for the web app's form posts (signed double-submit cookie).

Every browser gets a random id in an HttpOnly, SameSite=Strict cookie; each form carries
HMAC(secret, id) in a hidden field (HTMX requests send it as the ``X-CSRF-Token`` header). Another site
can make the browser send the cookie but can read neither the cookie nor the page, so it cannot produce
the token. A request whose ``Origin`` names another site is refused even with a valid token.

The secret lives in ``TUTOR_HOME/web-secret`` so that pages open in a tab stay valid across a restart of
``tutor web``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request

COOKIE = "tutor_csrf"
FIELD = "csrf_token"
HEADER = "x-csrf-token"
SECRET_FILE = "web-secret"


def load_or_create_secret(home: Path) -> bytes:
    """The signing secret, created once (mode 0600); two servers starting at once agree on one."""
    path = home / SECRET_FILE
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    text = path.read_text().strip()
    if len(text) < 32:  # empty or truncated (a crash while writing): replace it
        path.write_text(secrets.token_hex(32))
        text = path.read_text().strip()
    return text.encode()


class Csrf:
    def __init__(self, secret: bytes):
        self._secret = secret

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(24)

    def token(self, browser_id: str) -> str:
        return hmac.new(self._secret, browser_id.encode(), hashlib.sha256).hexdigest()

    def valid(self, request: Request, sent: str | None) -> bool:
        """True if the request carries this browser's token and does not come from another origin."""
        browser_id = request.cookies.get(COOKIE)
        sent = sent or request.headers.get(HEADER)
        if not browser_id or not sent:
            return False
        if not hmac.compare_digest(sent, self.token(browser_id)):
            return False
        return same_origin(request)


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from a page of another origin."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None or (origin == "null" and request.headers.get("sec-fetch-site") == "same-origin"):
        return True
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host
