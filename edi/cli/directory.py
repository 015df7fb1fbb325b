"""`edi directory import|show`: the directory of public structures (annuaire)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edi.cli.common import cfg, console, fail, print_json, yes

app = typer.Typer(help="Annuaire des structures publiques.", no_args_is_help=True)


@app.command("import")
def directory_import(
    ctx: typer.Context,
    structures: Path = typer.Argument(..., exists=True, dir_okay=False, help="Export CSV des structures (21 colonnes)."),
    services: Optional[Path] = typer.Option(None, "--services", exists=True, dir_okay=False),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="Accepter un fichier sans structure (vide l'annuaire)."),
):
    """Replace the directory with these files, in one transaction (a bad file changes nothing)."""
    from edi.route.directory import DirectoryFileError, import_directory

    try:
        stats = import_directory(cfg(ctx).database_url, structures, services, allow_empty)
    except DirectoryFileError as exc:
        fail(str(exc), "corrigez la ligne indiquée puis relancez l'import ; l'annuaire en place est inchangé")
    console.print(f"Annuaire importé : {stats.structures} structures, {stats.services} services "
                  f"({stats.seconds:.2f} s).")


@app.command("show")
def directory_show(ctx: typer.Context, siret: str, as_json: bool = typer.Option(False, "--json")):
    """Show one structure of the directory and its services."""
    from dataclasses import asdict

    from edi.route.directory import show

    found = show(cfg(ctx).database_url, siret)
    if found is None:
        fail(f"SIRET {siret} absent de l'annuaire", "importez l'annuaire à jour avec `edi directory import`")
    structure, services = found
    if as_json:
        print_json({"structure": asdict(structure), "services": [asdict(s) for s in services]})
        return
    console.print(f"[bold]{structure.siret}[/bold] {structure.name} — "
                  f"{'active' if structure.active else 'INACTIVE'}", highlight=False)
    console.print(f"  code service obligatoire : {yes(structure.service_required)} ; "
                  f"EJ obligatoire : {yes(structure.ej_required)} ; "
                  f"code service ou EJ : {yes(structure.service_or_ej)} ; MOA uniquement : {yes(structure.moa_only)}")
    if services:
        table = Table("Code service", "Nom", "EJ obligatoire", "Actif")
        for s in services:
            table.add_row(s.code, s.name, yes(s.ej_required), yes(s.active))
        console.print(table)
