"""Routes of the admin dashboard: the page and its two assets, all without a key.

They serve fixed files only (no data, no templating), so nothing here needs the admin key:
every number the page shows comes from the ``/admin/*`` JSON routes, which keep requiring it.
The headers lock the page down: a strict Content-Security-Policy (scripts, styles and fetches
from this origin only, no inline script, no framing, which also stops clickjacking of the
promote and rollback buttons), no referrer, no MIME sniffing.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from server.errors import APIError

router = APIRouter(prefix="/admin/dashboard")

STATIC = Path(__file__).resolve().parent / "static"
# name -> media type; a fixed list, so a request can never name another file.
ASSETS = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate on every load: an upgraded gateway must not run a stale script.
    "Cache-Control": "no-cache",
}


def asset_response(name: str) -> Response:
    """One of :data:`ASSETS` with the dashboard's security headers.

    Args:
        name: a key of :data:`ASSETS`.

    Returns:
        The file's bytes with its media type; 404 (OpenAI envelope) for any other name.
    """
    media_type = ASSETS.get(name)
    if media_type is None:
        raise APIError(404, f"no dashboard asset {name!r}", code="not_found")
    # Read per request (a few tens of kB from the page cache): no restart to see an edit.
    return Response((STATIC / name).read_bytes(), media_type=media_type, headers=HEADERS)


@router.get("", include_in_schema=False)
async def dashboard_page() -> Response:
    """The dashboard page (``GET /admin/dashboard``)."""
    return asset_response("dashboard.html")


@router.get("/{name}", include_in_schema=False)
async def dashboard_asset(name: str) -> Response:
    """The page's script and stylesheet (``/admin/dashboard/dashboard.js`` and ``.css``)."""
    if name == "dashboard.html":  # the page has one address
        raise APIError(404, f"no dashboard asset {name!r}", code="not_found")
    return asset_response(name)
