"""The console's pages, in French, rendered on the server (no JavaScript needed).

Tableau de bord, flows and invoices (search, detail with the step trace, CSV export), reports
rendered in French and downloadable as XML, the printable deposit certificate, a deposit form,
and the actions of `edi.web.actions` (ops: retry, resend, reprocess; recipients: statuses;
senders: recycle, complete). Every page needs a
session; every form carries the CSRF token. What is outside the user's scope answers 404.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from edi import lifecycle, log, queries
from edi.reports.render import render_text
from edi.web import actions, search, upload, users
from edi.web.auth import check_csrf, page_user
from edi.web.users import User

router = APIRouter(include_in_schema=False)
LOG = log.get("edi.web")
PageUser = Annotated[User, Depends(page_user)]


def _render(request: Request, template: str, context: dict, status_code: int = 200):
    web = request.app.state.web
    context = {"user": getattr(request.state, "user", None), "csrf": getattr(request.state, "csrf", ""), **context}
    return web.templates.TemplateResponse(request, template, context, status_code=status_code)


def _scope(request: Request, user: User) -> search.Scope:
    return search.scope_of(request.app.state.web.cfg, user)


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def _links(request: Request, found: search.Page) -> dict:
    """Previous/next page links keeping the filters, and the CSV export of the same search."""
    params = {k: v for k, v in request.query_params.items() if k != "page" and v}

    def at(page: int) -> str:
        return request.url.path + "?" + urlencode({**params, "page": page})

    return {"previous": at(found.page - 1) if found.page > 1 else None,
            "next": at(found.page + 1) if found.has_next else None,
            "csv": request.url.path + ".csv" + ("?" + urlencode(params) if params else "")}


def _safe_target(target: str) -> str:
    """Only a path of this site after login (never `//host` or `/\\host`, which leave it)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


# ------------------------------------------------------------------ login


@router.get("/connexion")
def login_form(request: Request, suite: str = "/"):
    sessions = request.app.state.web.sessions
    token = sessions.login_token(request)
    response = _render(request, "login.html", {"suite": _safe_target(suite), "error": "", "csrf": token})
    sessions.keep_login_token(response, token)
    return response


@router.post("/connexion")
def login(request: Request, login: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
          csrf: Annotated[str, Form()] = "", suite: Annotated[str, Form()] = "/"):
    web = request.app.state.web
    address = request.client.host if request.client else "?"
    if not web.sessions.login_token_ok(request, csrf):
        raise HTTPException(403, "Jeton CSRF absent ou invalide : rechargez la page de connexion.")
    if web.throttle.blocked(address):
        raise HTTPException(429, "Trop d'échecs de connexion depuis cette adresse : réessayez dans quelques minutes.")
    try:
        user = users.authenticate(web.url, login.strip(), password)
    except users.Locked as exc:
        LOG.warning("console_login_locked", login=login.strip()[:64], address=address)
        raise HTTPException(429, f"Compte verrouillé après plusieurs échecs jusqu'à "
                                 f"{exc.until:%H:%M:%S} UTC : réessayez ensuite.") from None
    if user is None:
        LOG.warning("console_login_failed", login=login.strip()[:64], address=address)
        web.throttle.failed(address)
        response = _render(request, "login.html", {"suite": _safe_target(suite), "csrf": csrf,
                                                   "error": "Identifiant ou mot de passe incorrect."}, 401)
        web.sessions.keep_login_token(response, csrf)
        return response
    LOG.info("console_login", user=user.login, role=user.role, address=address)
    response = RedirectResponse(_safe_target(suite), status_code=303)
    web.sessions.start(response, user)
    return response


@router.post("/deconnexion")
def logout(request: Request, user: PageUser, csrf: Annotated[str, Form()] = ""):
    check_csrf(request, csrf)
    response = RedirectResponse("/connexion", status_code=303)
    request.app.state.web.sessions.end(response)
    return response


# ------------------------------------------------------------------ dashboard


@router.get("/")
def dashboard(request: Request, user: PageUser):
    figures = search.dashboard_cached(request.app.state.web.url, _scope(request, user))
    peak = max([d["count"] for d in figures["flows_per_day"]] + [1])
    return _render(request, "dashboard.html", {"d": figures, "peak": peak})


# ------------------------------------------------------------------ flows


def _flow_scope(request: Request, user: User) -> search.Scope:
    scope = _scope(request, user)
    if not scope.sees_flows:
        raise HTTPException(404, "Les flux ne sont pas consultables par un destinataire.")
    return scope


@router.get("/flux")
def flows(request: Request, user: PageUser):
    scope = _flow_scope(request, user)
    f = search.FlowFilter.of(request.query_params)
    found = search.search_flows(request.app.state.web.url, scope, f, _page_number(request))
    return _render(request, "flows.html", {"f": f, "found": found, "links": _links(request, found)})


FLOW_COLUMNS = {"id": "Id", "flow_ref": "Identifiant de flux", "app": "Émetteur", "interface": "Interface",
                "filename": "Fichier", "state": "État", "error_code": "Code", "invoice_count": "Factures",
                "accepted_count": "Acceptées", "received_at": "Reçu le (UTC)", "source": "Canal"}
INVOICE_COLUMNS = {"number": "Numéro", "deposit_no": "Numéro de dépôt", "status": "Statut",
                   "status_label": "Libellé du statut", "supplier_id": "Fournisseur", "supplier_name": "Raison sociale",
                   "recipient_siret": "SIRET destinataire", "code_service": "Code service", "ej": "Engagement",
                   "issue_date": "Date de facture", "currency": "Devise", "total_ht": "Total HT",
                   "total_ttc": "Total TTC", "deposited_at": "Déposée le (UTC)", "app": "Émetteur",
                   "flow_ref": "Flux"}


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    """A CSV cell a spreadsheet will not run: text from partners (a supplier's name, an invoice
    number) that starts like a formula gets a leading quote; numbers stay numbers."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def _csv(rows, columns: dict[str, str], filename: str) -> StreamingResponse:
    """`;`-separated UTF-8 with BOM, as French spreadsheet software opens it; streamed."""
    def lines():
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
        writer.writerow(columns.values())
        yield "\ufeff" + buffer.getvalue()
        for row in rows:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow([_cell(row[k]) for k in columns])
            yield buffer.getvalue()

    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/flux.csv")
def flows_csv(request: Request, user: PageUser):
    scope = _flow_scope(request, user)
    rows = search.all_flows(request.app.state.web.url, scope, search.FlowFilter.of(request.query_params))
    return _csv(rows, FLOW_COLUMNS, "flux.csv")


FLOW_INVOICES_PAGE = 100  # invoices listed per page of a flow's detail


def _visible_flow(request: Request, user: User, ref: str) -> dict:
    """The flow as its page shows it: one page of its invoices (`?page=N`), the flow-level trace."""
    url = request.app.state.web.url
    page = _page_number(request)
    detail = search.visible_flow_detail(url, _scope(request, user), ref,
                                        page=((page - 1) * FLOW_INVOICES_PAGE, FLOW_INVOICES_PAGE))
    if detail is None:
        raise HTTPException(404, f"Flux {ref} introuvable.")
    return detail


def _flow_page(request: Request, user: User, ref: str, status_code: int = 200, **extra):
    detail = _visible_flow(request, user, ref)
    reports = [dict(filename=r["filename"], text=render_text(r["content"]))
               for r in queries.report_contents(request.app.state.web.url, detail["id"])]
    page = _page_number(request)
    at = f"/flux/{detail['id']}?page="
    pager = {"page": page, "previous": at + str(page - 1) if page > 1 else None,
             "next": at + str(page + 1) if detail["has_more"] else None}
    return _render(request, "flow.html", {"flow": detail, "reports": reports, "message": "", "error": "",
                                          "reprocessed": None, "pager": pager, **extra}, status_code)


@router.get("/flux/{ref}")
def flow(request: Request, user: PageUser, ref: str):
    return _flow_page(request, user, ref)


def _flow_action(request: Request, user: User, ref: str, csrf: str, action):
    """An ops action on a flow, then its page with the outcome (or the refusal) on top."""
    check_csrf(request, csrf)
    try:
        done = action(request.app.state.web)
    except actions.ActionRefused as exc:
        if exc.status == 404:
            raise HTTPException(404, exc.message) from None
        return _flow_page(request, user, ref, exc.status, error=exc.message)
    if isinstance(done, str):
        return _flow_page(request, user, ref, message=done)
    return _flow_page(request, user, ref, reprocessed=done)


@router.post("/flux/{ref}/relancer")
def flow_retry(request: Request, user: PageUser, ref: str, csrf: Annotated[str, Form()] = ""):
    return _flow_action(request, user, ref, csrf, lambda web: actions.retry_flow(web, user, ref))


@router.post("/flux/{ref}/retraiter")
def flow_reprocess(request: Request, user: PageUser, ref: str, csrf: Annotated[str, Form()] = "",
                   essai: Annotated[str, Form()] = ""):
    return _flow_action(request, user, ref, csrf, lambda web: actions.reprocess_flow(web, user, ref, bool(essai)))


@router.post("/flux/{ref}/rapports/{filename}/renvoyer")
def report_resend(request: Request, user: PageUser, ref: str, filename: str, csrf: Annotated[str, Form()] = ""):
    return _flow_action(request, user, ref, csrf, lambda web: actions.resend_report(web, user, ref, filename))


@router.get("/flux/{ref}/rapports/{filename}")
def flow_report(request: Request, user: PageUser, ref: str, filename: str):
    """One report's XML, from the flow's id alone (not the whole detail of the flow's page)."""
    url = request.app.state.web.url
    flow_id = search.visible_flow_id(url, _scope(request, user), ref)
    if flow_id is None:
        raise HTTPException(404, f"Flux {ref} introuvable.")
    content = queries.report_content(url, flow_id, filename)
    if content is None:
        raise HTTPException(404, f"Compte rendu {filename} introuvable pour ce flux.")
    return Response(content, media_type="application/xml",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/deposer")
def deposit_form(request: Request, user: PageUser):
    _flow_scope(request, user)
    return _render(request, "deposit.html", {"result": None, "error": ""})


@router.post("/deposer")
def deposit(request: Request, user: PageUser, file: UploadFile, csrf: Annotated[str, Form()] = ""):
    _flow_scope(request, user)
    check_csrf(request, csrf)
    web = request.app.state.web
    try:
        flow_row = upload.deposit(web.cfg, user, file.filename or "", upload.chunks(file.file))
    except upload.UploadRefused as exc:
        return _render(request, "deposit.html", {"result": None, "error": f"{exc.code} — {exc.message}"},
                       exc.status)
    if web.on_deposit:
        web.on_deposit(flow_row.id)
    return _render(request, "deposit.html", {"result": flow_row, "error": ""}, 201)


# ------------------------------------------------------------------ invoices


@router.get("/factures")
def invoices(request: Request, user: PageUser):
    f = search.InvoiceFilter.of(request.query_params)
    found = search.search_invoices(request.app.state.web.url, _scope(request, user), f, _page_number(request))
    return _render(request, "invoices.html", {"f": f, "found": found, "links": _links(request, found)})


@router.get("/factures.csv")
def invoices_csv(request: Request, user: PageUser):
    rows = search.all_invoices(request.app.state.web.url, _scope(request, user),
                               search.InvoiceFilter.of(request.query_params))
    return _csv(rows, INVOICE_COLUMNS, "factures.csv")


def _visible_invoice(request: Request, user: User, deposit_no: str) -> dict:
    url = request.app.state.web.url
    if not search.invoice_visible(url, _scope(request, user), deposit_no):
        raise HTTPException(404, f"Facture {deposit_no} introuvable.")
    return queries.invoice_detail(url, deposit_no)


def _invoice_page(request: Request, user: User, deposit_no: str, status_code: int = 200, **extra):
    inv = _visible_invoice(request, user, deposit_no)
    choices = actions.status_choices(user, inv["status"]) if user.role in ("ops", "recipient") else []
    supplier = user.role in ("ops", "sender")  # a sender sees only its own invoices here
    return _render(request, "invoice.html", {
        "inv": inv, "choices": choices, "reasons": lifecycle.REASONS, "message": "", "error": "",
        "can_recycle": supplier and inv["status"] == lifecycle.TO_RECYCLE,
        "can_complete": supplier and inv["status"] == lifecycle.SUSPENDED, **extra}, status_code)


@router.get("/factures/{deposit_no}")
def invoice(request: Request, user: PageUser, deposit_no: str):
    return _invoice_page(request, user, deposit_no)


@router.post("/factures/{deposit_no}/statut")
def invoice_status(request: Request, user: PageUser, deposit_no: str, csrf: Annotated[str, Form()] = "",
                   statut: Annotated[str, Form()] = "", motif: Annotated[str, Form()] = "",
                   commentaire: Annotated[str, Form()] = "", mandat: Annotated[str, Form()] = ""):
    check_csrf(request, csrf)
    return _invoice_action(
        request, user, deposit_no,
        lambda web: actions.set_status(web, user, deposit_no, statut, motif, commentaire, mandat),
        lambda a: (f"Statut {a.previous} → {a.status} {lifecycle.LABELS[a.status]} enregistré ; "
                   f"compte rendu {a.report} envoyé au fournisseur."))


def _done(verb: str):
    """The message of a sender's action (recycled, completed) once applied."""
    return lambda a: (f"Facture {verb} : statut {a.previous} → {a.status} {lifecycle.LABELS[a.status]} ; "
                      f"compte rendu {a.report} dans votre dossier out/.")


def _invoice_action(request: Request, user: User, deposit_no: str, action, message):
    """Run an invoice action for the page: refusals shown on the invoice's page (404 and 403 as
    such), the outcome as `message(applied)`."""
    try:
        applied = action(request.app.state.web)
    except actions.ActionRefused as exc:
        if exc.status == 404:
            raise HTTPException(404, exc.message) from None
        if exc.status == 403:
            raise HTTPException(403, exc.message) from None
        return _invoice_page(request, user, deposit_no, exc.status, error=exc.message)
    return _invoice_page(request, user, deposit_no, message=message(applied))


@router.post("/factures/{deposit_no}/recycler")
def invoice_recycle(request: Request, user: PageUser, deposit_no: str, csrf: Annotated[str, Form()] = "",
                    siret: Annotated[str, Form()] = "", service: Annotated[str, Form()] = "",
                    ej: Annotated[str, Form()] = ""):
    check_csrf(request, csrf)
    return _invoice_action(request, user, deposit_no,
                           lambda web: actions.recycle(web, user, deposit_no, siret, service, ej), _done("recyclée"))


@router.post("/factures/{deposit_no}/completer")
def invoice_complete(request: Request, user: PageUser, deposit_no: str,
                     pieces: Annotated[list[UploadFile] | None, File()] = None, csrf: Annotated[str, Form()] = "",
                     commentaire: Annotated[str, Form()] = ""):
    check_csrf(request, csrf)
    found = [actions.Piece(f.filename or "", upload.chunks(f.file)) for f in pieces or []]
    return _invoice_action(request, user, deposit_no, lambda web: actions.complete(
        web, user, deposit_no, found, commentaire), _done("complétée"))


@router.get("/factures/{deposit_no}/certificat")
def certificate(request: Request, user: PageUser, deposit_no: str):
    inv = _visible_invoice(request, user, deposit_no)
    try:
        digest = base64.b64decode(inv["certificate"], validate=True).hex()
    except (binascii.Error, ValueError):
        digest = ""
    deposited = next((e["at"] for e in inv["events"] if e["code"] == "01"), None)
    return _render(request, "certificate.html", {"inv": inv, "sha256_hex": digest, "deposited": deposited})


# ------------------------------------------------------------------ directory and partners


STRUCTURE_COLUMNS = {"siret": "SIRET", "name": "Raison sociale", "postal_code": "Code postal", "city": "Ville",
                     "active": "Active", "service_required": "Service obligatoire", "ej_required": "Engagement obligatoire"}


@router.get("/annuaire")
def directory(request: Request, user: PageUser):
    f = search.StructureFilter.of(request.query_params)
    found = search.search_structures(request.app.state.web.url, f, _page_number(request))
    return _render(request, "directory.html", {"f": f, "found": found, "links": _links(request, found)})


@router.get("/annuaire.csv")
def directory_csv(request: Request, user: PageUser):
    rows = search.all_structures(request.app.state.web.url, search.StructureFilter.of(request.query_params))
    return _csv(rows, STRUCTURE_COLUMNS, "annuaire.csv")


@router.get("/annuaire/{siret}")
def structure(request: Request, user: PageUser, siret: str):
    found = search.structure_detail(request.app.state.web.url, siret)
    if found is None:
        raise HTTPException(404, f"Structure {siret} absente de l'annuaire.")
    return _render(request, "structure.html", {"st": found})


@router.get("/partenaires")
def partners_page(request: Request, user: PageUser):
    """Partner accounts (ops only: keys and accounts are not other partners' business)."""
    from edi import partners

    if user.role != "ops":
        raise HTTPException(404, "Page introuvable.")
    return _render(request, "partners.html", {"partners": partners.list_partners(request.app.state.web.url)})
