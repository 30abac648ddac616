"""The HTML pages: static files filled in by the browser from the JSON API."""

from __future__ import annotations

import html
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import MCBackendError, RunNotFoundError

__all__ = ["page_routes", "error_page"]

STATIC = files(__package__) / "static"


def _template(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def error_page(title: str, message: str, status_code: int) -> HTMLResponse:
    text = _template("error.html").replace("{title}", html.escape(title))
    return HTMLResponse(text.replace("{message}", html.escape(message)), status_code=status_code)


def runs_page(request: Request) -> Response:
    return HTMLResponse(_template("runs.html"))


def run_page(request: Request) -> Response:
    rid = request.path_params["rid"]
    source = request.app.state.viewer.source
    try:
        with source.access():
            source.run(rid)
    except RunNotFoundError as ex:
        return error_page("Run not found", str(ex), 404)
    except MCBackendError as ex:
        return error_page("Run cannot be read", f"{type(ex).__name__}: {ex}", 500)
    return HTMLResponse(_template("run.html").replace("{rid}", html.escape(rid, quote=True)))


def page_routes() -> list[Route | Mount]:
    return [
        Route("/", runs_page),
        Route("/runs/{rid}", run_page),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
