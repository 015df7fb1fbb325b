"""`edi rules ...`: the rule catalogue (issue 3).

    edi rules list [--json | --markdown]

The main CLI stores the loaded `Config` in `ctx.obj` and mounts this app with
`app.add_typer(cli_rules.app, name="rules")`; run alone, it loads the default configuration.
The severities shown are those in effect: `[rules.severity]` of the configuration over the
defaults. `--markdown` prints the defaults only: it is the text of docs/rules.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edi import config as config_mod
from edi.validate import catalogue, rules

app = typer.Typer(help="Règles de contrôle : catalogue, sévérités.", no_args_is_help=True)


def _cfg(ctx: typer.Context) -> config_mod.Config:
    return config_mod.of_context(ctx)


def severity_overrides(cfg: config_mod.Config) -> dict[str, str]:
    """`[rules.severity]` of the configuration (code -> fatal | warning | off)."""
    table = (cfg.data.get("rules") or {}).get("severity") or {}
    return {str(k): str(v) for k, v in table.items()}


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
    overrides = severity_overrides(_cfg(ctx))
    problems = catalogue.override_problems(overrides)
    err = Console(stderr=True)
    for problem in problems:
        err.print(f"[yellow]Attention :[/yellow] {escape('[rules.severity]')} {escape(problem)}",
                  highlight=False)
    valid = {k: v for k, v in overrides.items() if v in rules.SEVERITIES}  # others: warned
    rows = catalogue.as_dicts(valid)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
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
