"""The console's ASGI application: pages (French, server-rendered), `/api/v1`, health, metrics.

`create_app(cfg)` builds everything from the configuration; the same database, spool, queries and
report rendering as the command line, so the console never has its own idea of a flow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from starlette.exceptions import HTTPException
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import inspect

from edi import db
from edi.config import Config
from edi.db.models import Invoice
from edi.reports.statut import LIFECYCLE_LABELS
from edi.web import monitoring
from edi.web.auth import AddressThrottle, LoginRequired, Sessions, api_user, load_secret, page_user
from edi.web.users import User
from edi.web.search import FLOW_STATE_LABELS, FilterError

HERE = Path(__file__).parent
# No script, no frame, no resource from elsewhere: the pages need none of them.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@dataclass
class Web:
    """What every request handler reaches through `request.app.state.web`."""

    cfg: Config
    sessions: Sessions
    templates: Jinja2Templates
    throttle: AddressThrottle
    on_deposit: Callable[[int], None] | None = None

    @property
    def url(self) -> str:
        return self.cfg.database_url


def _when(value) -> str:
    """An ISO timestamp as a French reader expects it (UTC)."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.strftime("%d/%m/%Y %H:%M:%S")


def _ensure_indexes(url: str) -> None:
    """Indexes the console's searches need, on a database created before they were declared."""
    eng = db.engine_for(url)
    present = {i["name"] for i in inspect(eng).get_indexes("invoice")}
    for index in Invoice.__table__.indexes:
        if index.name not in present:
            index.create(eng, checkfirst=True)


def create_app(cfg: Config, *, checks: dict[str, Callable[[], str]] | None = None,
               on_deposit: Callable[[int], None] | None = None,
               gauges: dict[str, tuple[str, Callable[[], float]]] | None = None) -> FastAPI:
    """`checks`: extra health checks (name -> callable returning "ok" or raising); `on_deposit`:
    called with the flow id of each uploaded flow (`edi serve` wakes its workers with it);
    `gauges`: extra metrics of the host service (name -> (help, reader))."""
    from edi.web import api, pages

    settings = cfg.web
    _ensure_indexes(cfg.database_url)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["when"] = _when
    templates.env.globals.update(lifecycle=LIFECYCLE_LABELS, flow_states=FLOW_STATE_LABELS)
    sessions = Sessions(load_secret(settings.secret, cfg.spool_root), int(settings.session_hours * 3600),
                        settings.cookie_secure)
    app = FastAPI(title="edi — API", version="1", description="Flux et factures de la plateforme edi.",
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = Web(cfg, sessions, templates, AddressThrottle(), on_deposit)
    registry = monitoring.registry(cfg, gauges)

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        healthy, results = monitoring.health(cfg, checks)
        return JSONResponse({"status": "ok" if healthy else "en échec", "checks": results},
                            status_code=200 if healthy else 503)

    @app.get("/metrics", include_in_schema=False)
    def metrics():
        return Response(monitoring.metrics_text(registry), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def _security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi(_user: Annotated[User, Depends(api_user)]):
        return app.openapi()

    @app.get("/api/docs", include_in_schema=False)
    def api_docs(request: Request, user: Annotated[User, Depends(page_user)]):
        """The API's documentation, rendered here from its OpenAPI description (no CDN needed)."""
        return templates.TemplateResponse(request, "api.html", {"api": app.openapi(), "user": user,
                                                                 "csrf": request.state.csrf})

    @app.exception_handler(LoginRequired)
    def _to_login(request: Request, _exc):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/connexion?suite={quote(target)}", status_code=303)

    @app.exception_handler(HTTPException)
    def _http_error(request: Request, exc: HTTPException):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        titles = {404: "Page introuvable", 403: "Accès refusé", 429: "Trop de tentatives"}
        return templates.TemplateResponse(request, "error.html", {
            "title": titles.get(exc.status_code, "Erreur"), "detail": exc.detail,
            "user": getattr(request.state, "user", None)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(FilterError)
    def _filter_error(request: Request, exc: FilterError):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=422)
        return templates.TemplateResponse(request, "error.html", {
            "title": "Recherche invalide", "detail": str(exc), "user": getattr(request.state, "user", None)},
            status_code=422)

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    return app
