"""The browser pages: GET / (to the dashboard), /dashboard, /playground, /console (admin: keys, tenants,
backends), /favicon.ico and their static files.

Plain HTML, CSS and JavaScript shipped in the package (gateway/web/): no build step, no CDN, so the pages
work offline. They hold no data: the JavaScript calls the API with the key pasted into the page (kept in
the tab's session storage). A strict Content-Security-Policy allows only this origin's scripts and calls.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.response import Redirect

from gateway.vocab.errors import NotFound

WEB = Path(__file__).resolve().parent.parent / "web"
TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".js": "text/javascript; charset=utf-8"}
ASSETS = frozenset({"style.css", "common.js", "dashboard.js", "playground.js", "detail.js", "console.js",
                    "console-keys.js", "console-tenants.js", "console-backends.js"})
# A small inline icon: the router's fork, in the header's colours.
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" '
           b'fill="#1d2330"/><path d="M6 16h8l6-8h6M14 16l6 8h6" stroke="#2a9d8f" stroke-width="3" fill="none" '
           b'stroke-linecap="round" stroke-linejoin="round"/></svg>')
HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _file(name: str) -> Response:
    path = WEB / name
    return Response(path.read_bytes(), media_type=TYPES[path.suffix], headers=HEADERS)


@get("/", include_in_schema=False)
async def index() -> Redirect:
    return Redirect("/dashboard", status_code=302)


@get("/dashboard", include_in_schema=False)
async def dashboard() -> Response:
    return _file("dashboard.html")


@get("/playground", include_in_schema=False)
async def playground() -> Response:
    return _file("playground.html")


@get("/console", include_in_schema=False)
async def console() -> Response:
    return _file("console.html")


@get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    return Response(FAVICON, media_type="image/svg+xml", headers={**HEADERS, "cache-control": "max-age=86400"})


@get("/static/{name:str}", include_in_schema=False)
async def static(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"No static file {name[:64]!r}")
    return _file(name)
