"""`edi reports ...`: the reports sent to partners and their delivery (issue 4, point 6).

    edi reports list [--partner APP] [--failed] [--limit N] [--json]
    edi reports resend REF          # REF = report file name or internal id

`list` shows, for each report, when it was written to the partner's `out/`, retrieved over SFTP,
and — for a partner with a push destination — the push state. `resend` puts the file back into
`out/` if it is gone and, for a push partner, pushes it now with a fresh attempt budget.
The root command loads the configuration (`edi.cli.common`).
"""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edi.cli.common import cfg as _cfg
from edi.cli.common import print_json
from edi.reports import push

app = typer.Typer(help="Comptes rendus envoyés aux partenaires : dépôt, retrait, envoi SFTP.", no_args_is_help=True)


def _push_text(p: dict | None) -> str:
    if p is None:
        return "-"
    text = f"{push.STATE_LABELS.get(p['state'], p['state'])} ({p['attempts']} essai(s))"
    if p["state"] == push.RETRY and p["next_at"]:
        text += f", prochain {p['next_at'][:19]}"
    if p["last_error"] and p["state"] in (push.RETRY, push.FAILED):
        text += f"\n{p['last_error']}"
    return text


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    partner: Optional[str] = typer.Option(None, "--partner", help="Code application du partenaire."),
    failed: bool = typer.Option(False, "--failed", help="Seulement les envois SFTP en échec."),
    limit: int = typer.Option(100, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json", help="Sortie JSON."),
) -> None:
    """Lister les comptes rendus, du plus récent au plus ancien."""
    rows = push.list_reports(_cfg(ctx).database_url, partner=partner, failed=failed, limit=limit)
    if as_json:
        print_json(rows)
        return
    table = Table(title="Comptes rendus" + (" en échec d'envoi" if failed else ""))
    for col in ("Id", "Fichier", "Partenaire", "Type", "Créé", "Déposé (out/)", "Retiré", "Envoi SFTP"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), r["file"], r["partner"], r["kind"], (r["created"] or "")[:19],
                      (r["written"] or "-")[:19], (r["retrieved"] or "-")[:19], _push_text(r["push"]))
    Console(width=200).print(table)


@app.command("resend")
def resend_cmd(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="REF", help="Nom du fichier du compte rendu, ou son id."),
) -> None:
    """Renvoyer un compte rendu : de nouveau dans out/ s'il n'y est plus, et envoi SFTP immédiat."""
    try:
        outcome = push.resend(_cfg(ctx), ref)
    except LookupError as exc:
        typer.echo(f"erreur : {exc.args[0]} (voir `edi reports list`)", err=True)
        raise typer.Exit(code=2)
    if outcome.rewritten:
        typer.echo(f"{outcome.filename} : de nouveau disponible dans out/ de {outcome.app}")
    if outcome.push_state is None:
        if not outcome.rewritten:
            typer.echo(f"{outcome.filename} : déjà présent dans out/ de {outcome.app} (pas d'envoi SFTP configuré)")
        return
    if outcome.push_state == push.PUSHED:
        typer.echo(f"{outcome.filename} : envoyé à la destination SFTP de {outcome.app}")
        return
    typer.echo(f"{outcome.filename} : envoi SFTP en échec ({push.STATE_LABELS.get(outcome.push_state)}) : "
               f"{outcome.error}", err=True)
    raise typer.Exit(code=1)
