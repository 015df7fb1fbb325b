"""`edi invoices show|status|recycle|complete|history`: one deposited invoice, its life cycle set by ops."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from edi.cli.common import cfg, console, fail, operator, shown

app = typer.Typer(help="Factures déposées.", no_args_is_help=True)


@app.command("show")
def invoices_show(ctx: typer.Context, deposit_no: str, as_json: bool = typer.Option(False, "--json")):
    """Show one deposited invoice: routing data, status history, findings."""
    from edi import queries

    detail = queries.invoice_detail(cfg(ctx).database_url, deposit_no)
    if shown(detail, as_json, f"facture déposée {deposit_no} introuvable",
             "le numéro de dépôt figure dans le compte rendu de traitement (ComplementStatut)"):
        return
    console.print(f"[bold]Facture {detail['number']}[/bold] — dépôt {detail['deposit_no']} — statut {detail['status']}",
                  highlight=False)
    for key in ("flow", "supplier_id", "recipient_siret", "code_service", "ej", "total_ttc", "certificate", "path"):
        console.print(f"  {key} : {detail[key]}", highlight=False)
    for ev in detail["events"]:
        console.print(f"  {ev['at'][:19]}  {ev['code']} {ev['label']}  ({ev['producer']}) {ev['comment']}",
                      highlight=False)
    for f in detail["findings"]:
        console.print(f"  ! {f['code']} [{f['reason']}] {f['message']} — {f['location']}", highlight=False, markup=False)


@app.command("status")
def invoices_status(
    ctx: typer.Context,
    deposit_no: str,
    code: str = typer.Argument(..., help="Nouveau statut (04 à 11), voir docs/lifecycle.md."),
    reason: str = typer.Option("", "--reason", help="Motif de la réforme (obligatoire pour 04, 05, 06)."),
    comment: str = typer.Option("", "--comment", help="Commentaire pour le fournisseur."),
    mandate: str = typer.Option("", "--mandate", help="Numéro de mandat (08 à 11)."),
    by: Optional[str] = typer.Option(None, "--by", help="Qui agit (défaut : l'utilisateur du système)."),
):
    """Set an invoice's status for its recipient (recipients without EDI, support): checked against
    the life-cycle table, recorded with who did it, reported to the supplier's sender (FEN1200A)."""
    from edi.route import status

    producer = operator(by)
    change = status.Change(status=code.strip().zfill(2), actor="ops", producer=producer,
                           reason=reason.strip().upper(), comment=comment.strip(), mandate=mandate.strip())
    _done(ctx, lambda: status.change_status(cfg(ctx).database_url, deposit_no, change), producer)


@app.command("recycle")
def invoices_recycle(
    ctx: typer.Context,
    deposit_no: str,
    siret: Optional[str] = typer.Option(None, "--siret", help="Nouveau SIRET du destinataire."),
    service: Optional[str] = typer.Option(None, "--service", help="Nouveau code service (\"\" : aucun)."),
    ej: Optional[str] = typer.Option(None, "--ej", help="Nouvel engagement juridique (\"\" : aucun)."),
    by: Optional[str] = typer.Option(None, "--by", help="Qui agit (défaut : l'utilisateur du système)."),
):
    """Recycle an invoice in 04 for its supplier: new routing data (checked by the routing rules),
    back to 03, reported to the sender (FEN1200A) and delivered again (`Renvoi` = Recyclée)."""
    from edi.route import resend
    from edi.spool import Spool

    producer = operator(by)
    c = cfg(ctx)
    _done(ctx, lambda: resend.recycle_by_ops(
        c.database_url, Spool(c.spool_root), c.ej_patterns, deposit_no, siret=siret and siret.strip(),
        code_service=service if service is None else service.strip(), ej=ej if ej is None else ej.strip(),
        producer=producer), producer)


@app.command("complete")
def invoices_complete(
    ctx: typer.Context,
    deposit_no: str,
    attach: list[Path] = typer.Option(..., "--attach", exists=True, dir_okay=False, help="Pièce à ajouter (répétable)."),
    comment: str = typer.Option("", "--comment", help="Commentaire pour le destinataire."),
    by: Optional[str] = typer.Option(None, "--by", help="Qui agit (défaut : l'utilisateur du système)."),
):
    """Complete a suspended (06) invoice for its supplier: the pieces added, 12 Complétée, reported
    to the sender (FEN1200A) and delivered again (`Renvoi` = Complétée)."""
    from edi.route import resend

    producer = operator(by)
    _done(ctx, lambda: resend.complete_by_ops(cfg(ctx).database_url, [str(p) for p in attach],
                                              deposit_no=deposit_no, comment=comment.strip(), producer=producer),
          producer)


def _done(ctx: typer.Context, action, producer: str) -> None:
    """Run an ops change; a refusal is its code and message (exit 2); then write the reports."""
    from edi import lifecycle
    from edi.reports.outbox import deliver_pending
    from edi.route import status
    from edi.spool import Spool

    try:
        applied = action()
    except status.Refused as refused:
        fail(escape(str(refused)))
    deliver_pending(cfg(ctx).database_url, Spool(cfg(ctx).spool_root), applied.flow_id)
    console.print(f"Facture {applied.number} (dépôt {applied.deposit_no}) : {applied.previous} → {applied.status} "
                  f"{lifecycle.LABELS[applied.status]}, par {producer} ; compte rendu {applied.report}",
                  highlight=False, markup=False, soft_wrap=True)


@app.command("history")
def invoices_history(ctx: typer.Context, deposit_no: str, as_json: bool = typer.Option(False, "--json")):
    """An invoice's statuses, oldest first: who set each, reason, comment, mandate, report."""
    from edi.route import status

    found = status.history(cfg(ctx).database_url, deposit_no)
    if shown(found, as_json, f"REJ_INEX : aucune facture déposée sous le numéro {escape(deposit_no)}"):
        return
    console.print(f"Facture {found['number']} — dépôt {found['deposit_no']} — statut {found['status']} {found['label']}"
                  + (" (final)" if found["final"] else ""), highlight=False, markup=False)
    for e in found["events"]:
        parts = [f"{e['at'][:19].replace('T', ' ')}  {e['status']} {e['name']}", f"par {e['producer']} ({e['actor']})"]
        parts += [f"{what} {e[key]}" for what, key in (("motif", "reason"), ("commentaire :", "comment"),
                                                       ("mandat", "mandate"), ("compte rendu", "report")) if e[key]]
        console.print("  " + " — ".join(parts), highlight=False, markup=False, soft_wrap=True)
    if not found["final"]:
        console.print("Statuts possibles pour l'exploitation : " + (", ".join(found["next"]["ops"]) or "aucun"),
                      highlight=False, markup=False)
