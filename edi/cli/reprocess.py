"""`edi reprocess`: check finished flows again from their archived originals (edi.reprocess)."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import Progress

from edi.cli.common import cfg, console, fail, operator, print_json


def reprocess_cmd(
    ctx: typer.Context,
    refs: Optional[list[str]] = typer.Argument(None, help="FLOWID ou id interne des flux à retraiter."),
    state: Optional[str] = typer.Option(None, "--state", help="Sans REF : les flux terminés dans cet état."),
    since: Optional[datetime] = typer.Option(None, "--since", help="Sans REF : reçus depuis AAAA-MM-JJ (UTC)."),
    partner: Optional[str] = typer.Option(None, "--partner", help="Sans REF : les flux de ce partenaire."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Dire ce qui changerait, sans rien écrire."),
    by: Optional[str] = typer.Option(None, "--by", help="Qui agit (défaut : l'utilisateur du système)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Reprocess finished flows from their archived originals (after a directory import, for
    example): rejected invoices accepted now are deposited, deposited ones are never deposited
    twice, new reports go to the sender. --dry-run prints what would change per invoice."""
    from edi import reprocess
    from edi.db.models import TERMINAL_STATES

    config = cfg(ctx)
    who = operator(by)
    if refs and (state or since or partner):
        fail("donnez des REF ou des filtres (--state, --since, --partner), pas les deux")
    if not refs and not (state or since or partner):
        fail("aucun flux désigné", "donnez des REF, ou --state / --since / --partner (flux terminés)")
    if state and state not in TERMINAL_STATES:
        fail(f"état {escape(state)} : seul un flux terminé se retraite ({', '.join(TERMINAL_STATES)})",
             "un flux IN_ATTENTE_RETRAITEMENT se remet en file par `edi flows retry REF`")
    ids, missing = reprocess.select_flows(config.database_url, refs or [], state=state, since=since, partner=partner)
    if missing:
        fail(f"flux introuvable(s) : {escape(', '.join(missing))}", "voir `edi flows list`")
    results, refused = [], []
    with Progress(console=console, transient=True, disable=as_json or len(ids) < 2) as progress:
        task = progress.add_task("Retraitement", total=len(ids))
        for flow_id in ids:
            try:
                results.append(reprocess.reprocess(config, flow_id, by=who, dry_run=dry_run))
            except reprocess.NotReprocessable as exc:
                refused.append(str(exc))
            progress.advance(task)
    if as_json:
        print_json(dict(dry_run=dry_run, flows=[r.as_dict() for r in results], refused=refused))
    else:
        for r in results:
            _print(r)
        for line in refused:
            console.print(f"[yellow]ignoré :[/yellow] {escape(line)}", highlight=False)
        changed = sum(r.changed for r in results)
        verb = "changeraient" if dry_run else "ont changé"
        console.print(f"{len(results)} flux retraité(s){' (essai à blanc : rien n’est écrit)' if dry_run else ''} ; "
                      f"{changed} {verb}.", highlight=False)
    if refused and not results:
        raise typer.Exit(2)


def _print(r) -> None:
    head = f"[bold]Flux {r.flow_id}[/bold] {escape(r.filename)} : {r.state_before}"
    if r.state_after != r.state_before:
        head += f" → {r.state_after}"
    console.print(head, highlight=False)
    if r.note:
        console.print(f"  {escape(r.note)}", highlight=False)
    for c in r.changes:
        mark = "" if c.applied else " [dim](inchangée)[/dim]"
        console.print(f"  facture {c.seq} n° {escape(c.number)} : {c.kind} — {escape(c.detail)}{mark}", highlight=False)
    if not r.changes and not r.note:
        console.print("  aucun changement", highlight=False)
    for name in r.reports:
        console.print(f"  compte rendu : {escape(name)}", highlight=False)
