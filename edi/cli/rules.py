"""`edi rules ...`: the rule catalogue (issue 3).

    edi rules list [--json | --markdown]
    edi rules verify-engine PATH... [--french]   # Saxon vs the native engine on your own invoices

The root command loads and checks the configuration (`edi.cli.common`); run alone, this app
loads the default one. The severities shown are those in effect: `[rules.severity]` of the
configuration over the defaults. `--markdown` prints the defaults only: it is the text of docs/rules.md.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edi.cli.common import cfg as _cfg
from edi.cli.common import print_json
from edi.validate import catalogue

app = typer.Typer(help="Règles de contrôle : catalogue, sévérités.", no_args_is_help=True)


@app.callback()
def _main(ctx: typer.Context) -> None:
    ctx.obj = _cfg(ctx)


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Sortie JSON."),
    markdown: bool = typer.Option(False, "--markdown", help="Texte de docs/rules.md."),
) -> None:
    """Every rule the platform can report, with its code, severity and reason code."""
    if markdown:
        typer.echo(catalogue.render_markdown(), nl=False)
        return
    rows = catalogue.as_dicts(_cfg(ctx).rules.severity)  # checked when the configuration was loaded
    if as_json:
        print_json(rows)
        return
    table = Table(title="Catalogue des règles (sévérités en vigueur)")
    for name in ("Code", "Niveau", "Sévérité", "Motif", "Syntaxes"):
        table.add_column(name, no_wrap=True)
    table.add_column("Message", ratio=1)
    for row in rows:
        severity = row["effective_severity"]
        if severity != row["severity"]:
            severity = f"{severity} (défaut {row['severity']})"
        table.add_row(row["code"], row["level"], severity, row["reason"],
                      ", ".join(row["syntaxes"]) or "toutes", row["message"])
    Console().print(table)


@app.command("verify-engine")
def verify_engine_cmd(
    paths: list[Path] = typer.Argument(..., exists=True, help="Factures, dossiers ou flux (.tar.gz)."),
    french: bool = typer.Option(False, "--french", help="Avec les règles BR-FR."),
) -> None:
    """Run Saxon (the reference) and the native engine on your invoices; print disagreements."""
    from edi.validate.native.differential import render, verify_engine

    report = verify_engine(paths, french=french)
    typer.echo(render(report))
    raise typer.Exit(1 if report.disagreements else 0)
