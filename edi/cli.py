"""`edi` command line (typer + rich). Command names and options are a contract (design.md).

Every command loads the configuration (`--config FILE`, else `EDI_CONFIG`, else
`config/edi.toml`) and creates or upgrades the database schema when it needs to.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edi import config as config_mod
from edi import log
from edi.config import Config
from edi.db.models import RECEIVED

app = typer.Typer(help="Plateforme de réception de flux de factures (mode EDI Chorus Pro).", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
directory_app = typer.Typer(help="Annuaire des structures publiques.", no_args_is_help=True)
flows_app = typer.Typer(help="Flux reçus.", no_args_is_help=True)
invoices_app = typer.Typer(help="Factures déposées.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
app.add_typer(directory_app, name="directory")
app.add_typer(flows_app, name="flows")
app.add_typer(invoices_app, name="invoices")
app.add_typer(config_app, name="config")

console = Console()
err = Console(stderr=True)


def _cfg(ctx: typer.Context) -> Config:
    return ctx.obj


def _print_json(data) -> None:
    """`--json` output: for scripts, on stdout, nothing else there (logs go to stderr)."""
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _fail(message: str, hint: str = "") -> None:
    err.print(f"[red]Erreur :[/red] {message}" + (f"\n[yellow]→[/yellow] {hint}" if hint else ""), highlight=False)
    raise typer.Exit(2)


@app.callback()
def main(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="Fichier de configuration (défaut : config/edi.toml)."),
):
    try:
        cfg = config_mod.load(config)
    except FileNotFoundError as exc:
        _fail(str(exc), "vérifiez --config ou EDI_CONFIG")
    except Exception as exc:  # noqa: BLE001 - a broken file must say where, not crash
        _fail(f"configuration illisible : {exc}", "corrigez le fichier TOML indiqué")
    log.configure(cfg.data["logging"]["format"], cfg.data["logging"]["level"])
    ctx.obj = cfg


# ------------------------------------------------------------------ config / init


@config_app.command("show")
def config_show(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")):
    """Print the effective configuration (file, defaults and EDI_* overrides)."""
    cfg = _cfg(ctx)
    data = dict(cfg.data)
    data["_resolved"] = {"config_file": str(cfg.path) if cfg.path else None,
                         "spool_root": str(cfg.spool_root), "database_url": cfg.database_url}
    if as_json:
        _print_json(data)
        return
    for section, values in data.items():
        if isinstance(values, dict):
            console.print(f"[{section}]", style="bold", markup=False)
            for key, value in values.items():
                console.print(f"  {key} = {value!r}", highlight=False, markup=False)
        else:
            console.print(f"{section} = {values!r}", highlight=False, markup=False)


@app.command("init")
def init(ctx: typer.Context):
    """Create the spool folders and the database schema; load the configured partners."""
    from edi.worker import prepare

    spool = prepare(_cfg(ctx))
    console.print(f"Spool prêt : {spool.root}\nBase : {_cfg(ctx).database_url}")


# ------------------------------------------------------------------ directory


@directory_app.command("import")
def directory_import(
    ctx: typer.Context,
    structures: Path = typer.Argument(..., exists=True, dir_okay=False, help="Export CSV des structures (21 colonnes)."),
    services: Optional[Path] = typer.Option(None, "--services", exists=True, dir_okay=False),
):
    """Replace the directory with these files, in one transaction (a bad file changes nothing)."""
    from edi.route.directory import DirectoryFileError, import_directory

    try:
        stats = import_directory(_cfg(ctx).database_url, structures, services)
    except DirectoryFileError as exc:
        _fail(str(exc), "corrigez la ligne indiquée puis relancez l'import ; l'annuaire en place est inchangé")
    console.print(f"Annuaire importé : {stats.structures} structures, {stats.services} services "
                  f"({stats.seconds:.2f} s).")


@directory_app.command("show")
def directory_show(ctx: typer.Context, siret: str, as_json: bool = typer.Option(False, "--json")):
    """Show one structure of the directory and its services."""
    from dataclasses import asdict

    from edi.route.directory import show

    found = show(_cfg(ctx).database_url, siret)
    if found is None:
        _fail(f"SIRET {siret} absent de l'annuaire", "importez l'annuaire à jour avec `edi directory import`")
    structure, services = found
    if as_json:
        _print_json({"structure": asdict(structure), "services": [asdict(s) for s in services]})
        return
    console.print(f"[bold]{structure.siret}[/bold] {structure.name} — "
                  f"{'active' if structure.active else 'INACTIVE'}", highlight=False)
    console.print(f"  code service obligatoire : {_yes(structure.service_required)} ; "
                  f"EJ obligatoire : {_yes(structure.ej_required)} ; "
                  f"code service ou EJ : {_yes(structure.service_or_ej)} ; MOA uniquement : {_yes(structure.moa_only)}")
    if services:
        table = Table("Code service", "Nom", "EJ obligatoire", "Actif")
        for s in services:
            table.add_row(s.code, s.name, _yes(s.ej_required), _yes(s.active))
        console.print(table)


def _yes(flag: bool) -> str:
    return "oui" if flag else "non"


# ------------------------------------------------------------------ ingest / serve / gen


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., exists=True, dir_okay=False),
    partner: Optional[str] = typer.Option(None, "--partner", help="Code application de l'émetteur."),
):
    """Process these flows now; returns when their reports are written.

    Exit 0 when every flow was processed (accepted or rejected); non-zero only when the platform
    itself failed.
    """
    from edi.worker import ingest_one, prepare

    flows = []
    try:
        spool = prepare(_cfg(ctx))
        for n, path in enumerate(paths, start=1):
            with err.status(f"[{n}/{len(paths)}] traitement de {path.name}…"):  # shown in a terminal only
                if (flow := ingest_one(_cfg(ctx), spool, path, partner)) is not None:
                    flows.append(flow)
    except Exception as exc:  # noqa: BLE001
        log.get("edi.cli").exception("ingest_failed")
        _fail(f"échec de la plateforme : {exc}", "le flux est archivé ; relancez `edi serve` ou `edi ingest` pour le reprendre")
    for flow in flows:
        console.print(f"{flow.filename} : [bold]{flow.state}[/bold] "
                      f"({flow.accepted_count}/{flow.invoice_count} factures acceptées)"
                      + (f" — {flow.error_code}" if flow.error_code else ""), highlight=False)


@app.command("serve")
def serve(ctx: typer.Context):
    """Run the service: spool watcher, workers, SFTP. Stops cleanly on SIGTERM/SIGINT."""
    from edi.serve import serve as run

    run(_cfg(ctx))


@app.command("gen")
def gen(
    interface: str = typer.Option(..., "--interface", help="FSO1110A, FSO1100A ou FSO1106A."),
    invoices: int = typer.Option(..., "--invoices", min=1),
    errors: float = typer.Option(0.0, "--errors", min=0.0, max=1.0),
    seed: int = typer.Option(0, "--seed"),
    partner: str = typer.Option("DEMO", "--partner"),
    out: Path = typer.Option(..., "--out", file_okay=False),
):
    """Write one realistic flow of N invoices into DIR, plus the directory files that route it."""
    from edi import gen as generator

    try:
        flow = generator.generate(interface, invoices, out, errors=errors, seed=seed, partner=partner)
    except ValueError as exc:
        _fail(str(exc))
    console.print(f"{flow.path}\n{flow.structures_csv}\n{flow.services_csv}", highlight=False)


# ------------------------------------------------------------------ flows / invoices


@flows_app.command("list")
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

    rows = queries.list_flows(_cfg(ctx).database_url, partner=partner, state=state, since=since, limit=limit)
    if as_json:
        _print_json(rows)
        return
    table = Table("Id", "Reçu le", "Émetteur", "Fichier", "État", "Factures", "Acceptées", "Code")
    for r in rows:
        table.add_row(str(r["id"]), r["received_at"][:19], r["app"], r["filename"], r["state"],
                      str(r["invoice_count"]), str(r["accepted_count"]), r["error_code"] or "")
    console.print(table)


@flows_app.command("show")
def flows_show(ctx: typer.Context, ref: str, as_json: bool = typer.Option(False, "--json")):
    """Show one flow (FLOWID or internal id): state, reports, invoices and findings."""
    from edi import queries
    from edi.reports.render import render_text

    detail = queries.flow_detail(_cfg(ctx).database_url, ref)
    if detail is None:
        _fail(f"flux {ref} introuvable", "donnez l'identifiant de flux (25 caractères) ou l'id interne ; voir `edi flows list`")
    if as_json:
        _print_json(detail)
        return
    console.print(f"[bold]Flux {detail['id']}[/bold] {detail['filename']} — {detail['state']}"
                  f" ({detail['accepted_count']}/{detail['invoice_count']} acceptées)", highlight=False)
    console.print(f"  reçu le {detail['received_at']} ; archive : {detail['archive_path']} ; sha256 {detail['sha256']}",
                  highlight=False)
    for report in queries.report_contents(_cfg(ctx).database_url, detail["id"]):
        console.print(f"\n[bold]{report['filename']}[/bold]", highlight=False)
        console.print(render_text(report["content"]), highlight=False, markup=False)


@flows_app.command("retry")
def flows_retry(ctx: typer.Context, ref: str):
    """Put a flow on hold (IN_ATTENTE_RETRAITEMENT, after repeated platform errors) back in the
    queue; `edi serve` takes it again from its archived original."""
    from edi.worker import retry

    flow = retry(_cfg(ctx).database_url, ref)
    if flow is None:
        _fail(f"flux {ref} introuvable", "voir `edi flows list --state IN_ATTENTE_RETRAITEMENT`")
    if flow.state != RECEIVED:
        _fail(f"le flux {ref} n'est pas en attente de retraitement (état {flow.state})")
    console.print(f"Flux {flow.id} remis en file : `edi serve` le reprendra.", highlight=False)


@invoices_app.command("show")
def invoices_show(ctx: typer.Context, deposit_no: str, as_json: bool = typer.Option(False, "--json")):
    """Show one deposited invoice: routing data, status history, findings."""
    from edi import queries

    detail = queries.invoice_detail(_cfg(ctx).database_url, deposit_no)
    if detail is None:
        _fail(f"facture déposée {deposit_no} introuvable", "le numéro de dépôt figure dans le compte rendu de traitement (ComplementStatut)")
    if as_json:
        _print_json(detail)
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


def _register_sub_apps() -> None:
    """Sub-apps owned by their own modules (partners, reports, rules, users and web)."""
    from edi import cli_partners, cli_reports, cli_rules, cli_users

    app.add_typer(cli_partners.app, name="partners")
    app.add_typer(cli_users.app, name="users")
    app.command("web")(cli_users.web)
    app.add_typer(cli_reports.app, name="reports")
    app.add_typer(cli_rules.app, name="rules")


_register_sub_apps()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
