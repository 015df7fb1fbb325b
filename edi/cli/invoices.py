"""`edi invoices show`: one deposited invoice."""

from __future__ import annotations

import typer

from edi.cli.common import cfg, console, fail, print_json

app = typer.Typer(help="Factures déposées.", no_args_is_help=True)


@app.command("show")
def invoices_show(ctx: typer.Context, deposit_no: str, as_json: bool = typer.Option(False, "--json")):
    """Show one deposited invoice: routing data, status history, findings."""
    from edi import queries

    detail = queries.invoice_detail(cfg(ctx).database_url, deposit_no)
    if detail is None:
        fail(f"facture déposée {deposit_no} introuvable", "le numéro de dépôt figure dans le compte rendu de traitement (ComplementStatut)")
    if as_json:
        print_json(detail)
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
