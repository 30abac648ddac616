"""The viewer's web application: pages, static files and the JSON API over one RunSource."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .api import Viewer, api_routes
from .pages import error_page, page_routes
from .source import RunSource

__all__ = ["create_app"]


def create_app(source: RunSource) -> Starlette:
    app = Starlette(
        routes=[*api_routes(), *page_routes()],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.viewer = Viewer(source)
    return app


async def _http_error(request: Request, ex: Exception) -> Response:
    if not isinstance(ex, HTTPException):  # Starlette routes only HTTPExceptions here
        return await _server_error(request, ex)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": ex.detail}, status_code=ex.status_code)
    return error_page(str(ex.detail), f"Nothing at {request.url.path}.", ex.status_code)


async def _server_error(request: Request, ex: Exception) -> Response:
    message = f"{type(ex).__name__}: {ex}"
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=500)
    return error_page("Server error", message, 500)
