"""`edi flows list|show|retry`: the flows received."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import typer
from rich.table import Table

from edi.cli.common import cfg, console, fail, print_json, shown
from edi.db.models import RECEIVED

app = typer.Typer(help="Flux reçus.", no_args_is_help=True)


@app.command("list")
def flows_list(
    ctx: typer.Context,
    partner: Optional[str] = typer.Option(None, "--partner"),
    state: Optional[str] = typer.Option(None, "--state"),
    since: Optional[datetime] = typer.Option(None, "--since", help="AAAA-MM-JJ[THH:MM:SS] (UTC)."),
    limit: int = typer.Option(100, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
):
    """List flows, newest first."""
    from edi import queries

    rows = queries.list_flows(cfg(ctx).database_url, partner=partner, state=state, since=since, limit=limit)
    if as_json:
        print_json(rows)
        return
    table = Table("Id", "Reçu le", "Émetteur", "Fichier", "État", "Factures", "Acceptées", "Code")
    for r in rows:
        table.add_row(str(r["id"]), r["received_at"][:19], r["app"], r["filename"], r["state"],
                      str(r["invoice_count"]), str(r["accepted_count"]), r["error_code"] or "")
    console.print(table)


@app.command("show")
def flows_show(ctx: typer.Context, ref: str, as_json: bool = typer.Option(False, "--json")):
    """Show one flow (FLOWID or internal id): state, reports, invoices and findings."""
    from edi import queries
    from edi.reports.render import render_text

    detail = queries.flow_detail(cfg(ctx).database_url, ref)
    if shown(detail, as_json, f"flux {ref} introuvable",
             "donnez l'identifiant de flux (25 caractères) ou l'id interne ; voir `edi flows list`"):
        return
    console.print(f"[bold]Flux {detail['id']}[/bold] {detail['filename']} — {detail['state']}"
                  f" ({detail['accepted_count']}/{detail['invoice_count']} acceptées)", highlight=False)
    console.print(f"  reçu le {detail['received_at']} ; archive : {detail['archive_path']} ; sha256 {detail['sha256']}",
                  highlight=False)
    if detail["last_error"]:
        console.print(f"  dernière erreur : {detail['last_error']}", highlight=False, markup=False)
    console.print("\n[bold]Étapes[/bold]")
    console.print(queries.trace_text(detail["trace"]), highlight=False, markup=False, soft_wrap=True)
    for report in queries.report_contents(cfg(ctx).database_url, detail["id"]):
        console.print(f"\n[bold]{report['filename']}[/bold]", highlight=False)
        console.print(render_text(report["content"]), highlight=False, markup=False)


@app.command("retry")
def flows_retry(ctx: typer.Context, ref: str):
    """Put a flow on hold (IN_ATTENTE_RETRAITEMENT, after repeated platform errors) back in the
    queue; `edi serve` takes it again from its archived original."""
    from edi.worker import retry

    flow = retry(cfg(ctx).database_url, ref)
    if flow is None:
        fail(f"flux {ref} introuvable", "voir `edi flows list --state IN_ATTENTE_RETRAITEMENT`")
    if flow.state != RECEIVED:
        fail(f"le flux {ref} n'est pas en attente de retraitement (état {flow.state})")
    console.print(f"Flux {flow.id} remis en file : `edi serve` le reprendra.", highlight=False)
