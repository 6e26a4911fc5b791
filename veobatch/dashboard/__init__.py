"""The dashboard: pages served by `veo-batch serve` beside the HTTP API, over the same
service, to watch batches, look at their videos and act on them.

- `sessions`: the login cookie (from the API's tokens; read-only tokens look, not act) and
  the CSRF token every action carries;
- `pages`: the routes (server-rendered with Jinja2; htmx, shipped in `static/`, refreshes the
  live parts while the tab is visible);
- `templates/`: the pages' HTML.
"""

from veobatch.dashboard.pages import router

__all__ = ["router"]
