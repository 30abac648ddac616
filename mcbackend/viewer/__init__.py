"""A read-only web viewer of the runs under one URL: ``mcbackend serve URL``.

Starlette serves static pages (hand-written SVG charts, no assets from the internet) and a
JSON API; every read goes through mcbackend's public read API, so every backend works.
Needs the ``viewer`` extra: ``pip install mcbackend[viewer]``.
"""

from .app import create_app
from .server import serve
from .source import RunSource

__all__ = ["RunSource", "create_app", "serve"]
