"""The root `edi` command (`--config`) and its top-level commands: init, ingest, serve, gen."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from edi import log
from edi.cli.common import cfg, console, err, fail, load

app = typer.Typer(help="Plateforme de réception de flux de factures (mode EDI Chorus Pro).", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)


@app.callback()
def main(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="Fichier de configuration (défaut : config/edi.toml)."),
):
    loaded = load(config)
    log.configure(loaded.logging.format, loaded.logging.level)
    ctx.obj = loaded


@app.command("init")
def init(ctx: typer.Context):
    """Create the spool folders and the database schema; load the configured partners."""
    from edi.worker import prepare

    spool = prepare(cfg(ctx))
    console.print(f"Spool prêt : {spool.root}\nBase : {cfg(ctx).database_url}")


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
        spool = prepare(cfg(ctx))
        for n, path in enumerate(paths, start=1):
            with err.status(f"[{n}/{len(paths)}] traitement de {path.name}…"):  # shown in a terminal only
                if (flow := ingest_one(cfg(ctx), spool, path, partner)) is not None:
                    flows.append(flow)
    except Exception as exc:  # noqa: BLE001
        log.get("edi.cli").exception("ingest_failed")
        fail(f"échec de la plateforme : {exc}", "le flux est archivé ; relancez `edi serve` ou `edi ingest` pour le reprendre")
    for flow in flows:
        console.print(f"{flow.filename} : [bold]{flow.state}[/bold] "
                      f"({flow.accepted_count}/{flow.invoice_count} factures acceptées)"
                      + (f" — {flow.error_code}" if flow.error_code else ""), highlight=False)


@app.command("serve")
def serve(ctx: typer.Context):
    """Run the service: spool watcher, workers, SFTP. Stops cleanly on SIGTERM/SIGINT."""
    from edi.serve import serve as run

    run(cfg(ctx))


@app.command("web")
def web(ctx: typer.Context):
    """Run the web console and HTTP API alone ([web] host, port; default 127.0.0.1:8080)."""
    from edi.web.server import run as run_web

    config = cfg(ctx)
    where = f"{config.web.host}:{config.web.port}"
    err.print(f"Console : http://{where}/  (API : /api/docs)", highlight=False)
    try:
        run_web(config)
    except RuntimeError as exc:
        fail(escape(f"{exc} — {where}"), escape("libérez ce port ou choisissez-en un autre : [web] port"))


@app.command("gen")
def gen(
    ctx: typer.Context,
    interface: Optional[str] = typer.Option(None, "--interface", help="FSO1110A, FSO1100A ou FSO1106A."),
    invoices: Optional[int] = typer.Option(None, "--invoices", min=1),
    errors: float = typer.Option(0.0, "--errors", min=0.0, max=1.0),
    seed: int = typer.Option(0, "--seed"),
    partner: str = typer.Option("DEMO", "--partner"),
    statuses: Optional[str] = typer.Option(None, "--statuses", metavar="FLOW",
                                           help="Flux de statuts d'un destinataire pour les factures de ce flux traité."),
    recipient: Optional[str] = typer.Option(None, "--recipient", help="Avec --statuses : le partenaire destinataire."),
    out: Path = typer.Option(..., "--out", file_okay=False),
):
    """Write one realistic flow of N invoices into DIR, plus the directory files that route it;
    with --statuses FLOW, the status flow a recipient partner sends for that flow's invoices."""
    if statuses is not None:
        from edi import gen_statuses

        try:
            path, answers = gen_statuses.generate(cfg(ctx).database_url, statuses, out, seed=seed, partner=recipient)
        except gen_statuses.GenError as exc:
            fail(str(exc))
        console.print(f"{path} ({len(answers)} statut(s))", highlight=False)
        return
    if interface is None or invoices is None:
        fail("--interface et --invoices sont obligatoires (ou --statuses FLUX)")
    from edi import gen as generator

    try:
        flow = generator.generate(interface, invoices, out, errors=errors, seed=seed, partner=partner)
    except ValueError as exc:
        fail(str(exc))
    console.print(f"{flow.path}\n{flow.structures_csv}\n{flow.services_csv}", highlight=False)
