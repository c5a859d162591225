"""The admin dashboard: one static page (HTML, JS, CSS) that reads the admin JSON API.

``GET /admin/dashboard`` serves the page. The shell holds no data, so it needs no key; the
page asks for the admin key, keeps it in ``sessionStorage`` (never in a URL, never logged)
and sends it as ``Authorization: Bearer`` to the same ``/admin/*`` routes the CLI uses.
"""

from server.dashboard.routes import router

__all__ = ["router"]
