"""`tutor web`: study in the browser. Pages rendered on the server (Jinja2), htmx vendored under static/,
a JSON API beside them; everything runs on the library `tutor study` uses (see app.py)."""

from tutor.web.app import create_app

__all__ = ["create_app"]
