"""`edi config show [--json]`: the effective configuration."""

from __future__ import annotations

import typer

from edi.cli.common import cfg, console, print_json

app = typer.Typer(help="Configuration.", no_args_is_help=True)


@app.command("show")
def config_show(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")):
    """Print the effective configuration (file, defaults and EDI_* overrides)."""
    loaded = cfg(ctx)
    data = loaded.model_dump(mode="json")
    data["_resolved"] = {"config_file": str(loaded.path) if loaded.path else None,
                         "spool_root": str(loaded.spool_root), "database_url": loaded.database_url}
    if as_json:
        print_json(data)
        return
    for section, values in data.items():
        if isinstance(values, dict):
            console.print(f"[{section}]", style="bold", markup=False)
            for key, value in values.items():
                console.print(f"  {key} = {value!r}", highlight=False, markup=False)
        else:
            console.print(f"{section} = {values!r}", highlight=False, markup=False)
