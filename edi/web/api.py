"""`/api/v1`: JSON searches and details of flows and invoices, and flow upload, for machine clients.

The same filters and scope as the console pages (`edi.web.search`); details are the JSON of
`edi flows show --json` and `edi invoices show --json`. A flow or invoice outside the caller's
scope answers 404, exactly as one that does not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from edi import queries
from edi.web import actions, search, upload
from edi.web.auth import api_user
from edi.web.users import User

router = APIRouter(prefix="/api/v1", tags=["v1"], responses={
    401: {"description": "Jeton absent ou invalide"}, 404: {"description": "Introuvable, ou hors de votre périmètre"}})
CurrentUser = Annotated[User, Depends(api_user)]


def _scope(request: Request, user: User) -> search.Scope:
    return search.scope_of(request.app.state.web.cfg, user)


def _page_json(found: search.Page, size: int) -> dict:
    return {"page": found.page, "size": size, "has_next": found.has_next, "items": found.rows}


@router.get("/flows", summary="Rechercher des flux")
def flows(request: Request, user: CurrentUser, partner: str = "", state: str = "", since: str = "",
          until: str = "", flowid: str = "", page: int = Query(1, ge=1),
          size: int = Query(search.PAGE_SIZE, ge=1, le=500)):
    """Filtres : `partner` (code application), `state` (état), `since`/`until` (date de réception,
    AAAA-MM-JJ), `flowid` ; pages de `size` flux, `has_next` dit s'il y en a d'autres."""
    scope = _scope(request, user)
    if not scope.sees_flows:
        raise HTTPException(403, "Les flux ne sont pas visibles pour un destinataire")
    f = search.FlowFilter(partner, state, since, until, flowid)
    return _page_json(search.search_flows(request.app.state.web.url, scope, f, page, size), size)


@router.get("/flows/{ref}", summary="Un flux (FLOWID ou identifiant interne)")
def flow(request: Request, user: CurrentUser, ref: str):
    detail = search.visible_flow_detail(request.app.state.web.url, _scope(request, user), ref)
    if detail is None:
        raise HTTPException(404, f"Flux {ref} introuvable")
    return detail


@router.post("/flows", status_code=201, summary="Déposer un flux (le nom du fichier est le nom du flux)", responses={
    400: {"description": "IRR_NOM_F, IRR_TYPE, IRR_CODE_INTER, IRR_VIDE"}, 403: {"description": "IRR_CODE_APP"},
    409: {"description": "IRR_UNCITE"}, 413: {"description": "IRR_TAILLE"}})
async def deposit(request: Request, user: CurrentUser, file: UploadFile):
    """Répond 201 avec l'identifiant du flux dès qu'il est archivé et enregistré ; le service le
    traite ensuite et ses comptes rendus arrivent dans `out/` comme pour un dépôt SFTP."""
    if user.role == "recipient":
        raise HTTPException(403, "Un destinataire ne dépose pas de flux de factures")
    web = request.app.state.web
    try:
        flow = await run_in_threadpool(upload.deposit, web.cfg, user, file.filename or "", upload.chunks(file.file))
    except upload.UploadRefused as exc:
        return JSONResponse({"code": exc.code, "detail": exc.message}, status_code=exc.status)
    if web.on_deposit:
        web.on_deposit(flow.id)
    return JSONResponse({"id": flow.id, "filename": flow.filename, "state": flow.state, "sha256": flow.sha256,
                         "size": flow.size}, status_code=201, headers={"Location": f"/api/v1/flows/{flow.id}"})


@router.get("/invoices", summary="Rechercher des factures")
def invoices(request: Request, user: CurrentUser, number: str = "", supplier: str = "", recipient: str = "",
             code_service: str = "", status: str = "", deposit_no: str = "", since: str = "", until: str = "",
             amount_min: str = "", amount_max: str = "", page: int = Query(1, ge=1),
             size: int = Query(search.PAGE_SIZE, ge=1, le=500)):
    """Filtres : `number`, `supplier` (SIRET fournisseur), `recipient` (SIRET destinataire),
    `code_service`, `status`, `deposit_no`, `since`/`until` (date de dépôt, AAAA-MM-JJ),
    `amount_min`/`amount_max` (montant TTC)."""
    f = search.InvoiceFilter(number, supplier, recipient, code_service, status, deposit_no, since, until,
                             amount_min, amount_max)
    found = search.search_invoices(request.app.state.web.url, _scope(request, user), f, page, size)
    return _page_json(found, size)


@router.get("/invoices/{deposit_no}", summary="Une facture déposée (numéro de dépôt)")
def invoice(request: Request, user: CurrentUser, deposit_no: str):
    url = request.app.state.web.url
    if not search.invoice_visible(url, _scope(request, user), deposit_no):
        raise HTTPException(404, f"Facture {deposit_no} introuvable")
    return queries.invoice_detail(url, deposit_no)


# ------------------------------------------------------------------ actions (edi.web.actions)


def _act(action):
    try:
        return action()
    except actions.ActionRefused as exc:
        raise HTTPException(exc.status, exc.message) from None


@router.post("/flows/{ref}/retry", summary="Remettre en file un flux en attente de retraitement (exploitation)")
def flow_retry(request: Request, user: CurrentUser, ref: str):
    return {"detail": _act(lambda: actions.retry_flow(request.app.state.web, user, ref))}


@router.post("/flows/{ref}/reprocess", summary="Retraiter un flux terminé depuis son original archivé (exploitation)")
def flow_reprocess(request: Request, user: CurrentUser, ref: str, dry_run: bool = False):
    """`dry_run=true` : ce qui changerait, facture par facture, sans rien écrire (comme
    `edi reprocess --dry-run`)."""
    return _act(lambda: actions.reprocess_flow(request.app.state.web, user, ref, dry_run)).as_dict()


@router.post("/flows/{ref}/reports/{filename}/resend", summary="Renvoyer un compte rendu (exploitation)")
def report_resend(request: Request, user: CurrentUser, ref: str, filename: str):
    return {"detail": _act(lambda: actions.resend_report(request.app.state.web, user, ref, filename))}


@router.post("/invoices/{deposit_no}/status", summary="Poser un statut (destinataire sur ses SIRET, exploitation)")
def invoice_status(request: Request, user: CurrentUser, deposit_no: str,
                   status: Annotated[str, Body()], reason: Annotated[str, Body()] = "",
                   comment: Annotated[str, Body()] = "", mandate: Annotated[str, Body()] = ""):
    """`status` : 07 à 11, ou `motif` (04, 05 ou 06 selon `reason`, liste de la réforme) ;
    refus : 422 avec le code REJ_* dans `detail`."""
    return _applied(_act(lambda: actions.set_status(request.app.state.web, user, deposit_no, status, reason,
                                                     comment, mandate)))


def _applied(applied) -> dict:
    return {"deposit_no": applied.deposit_no, "previous": applied.previous, "status": applied.status,
            "report": applied.report}


@router.post("/invoices/{deposit_no}/recycle", summary="Recycler une facture en 04 (son émetteur, exploitation)",
             responses={400: {"description": "REJ_* ou ROUT-* (statut, règles de routage)"},
                        403: {"description": "Destinataire"}})
def invoice_recycle(request: Request, user: CurrentUser, deposit_no: str,
                    siret: Annotated[str | None, Body()] = None, service: Annotated[str | None, Body()] = None,
                    ej: Annotated[str | None, Body()] = None):
    """Comme `edi invoices recycle` : `siret`, `service`, `ej` nouveaux (absents : inchangés ;
    `service` ou `ej` vides : aucun), vérifiés par les règles de routage ; statut 03, compte rendu
    FEN1200A dans `out/`, facture remise au destinataire (`Renvoi` = Recyclée)."""
    return _applied(_act(lambda: actions.recycle(request.app.state.web, user, deposit_no, siret, service, ej)))


@router.post("/invoices/{deposit_no}/complete", summary="Compléter une facture en 06 (son émetteur, exploitation)",
             responses={400: {"description": "REJ_* (statut, aucune pièce)"}, 403: {"description": "Destinataire"},
                        413: {"description": "Pièce trop grande (limits.max_file_bytes)"}})
def invoice_complete(request: Request, user: CurrentUser, deposit_no: str,
                     files: Annotated[list[UploadFile] | None, File()] = None,
                     comment: Annotated[str, Form()] = ""):
    """Comme `edi invoices complete` : une ou plusieurs pièces (`files`, multipart) et un
    commentaire ; statut 12 Complétée, compte rendu FEN1200A, facture remise de nouveau."""
    pieces = [actions.Piece(f.filename or "", upload.chunks(f.file)) for f in files or []]
    return _applied(_act(lambda: actions.complete(request.app.state.web, user, deposit_no, pieces, comment)))
