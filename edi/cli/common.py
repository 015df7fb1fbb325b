"""What every command group shares: the consoles, the one configuration loader, JSON output,
and the error line of a refused command."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from edi import config as config_mod
from edi import partners
from edi.config import Config

console = Console()
err = Console(stderr=True)


def load(path: Path | None = None) -> Config:
    """Load and check the whole configuration, once, before any command touches anything.

    A configuration that cannot be used ends the command: exit code 2 and the one line of the
    `ConfigError` (file, section, key, expected, found) on stderr.
    """
    try:
        cfg = config_mod.load(path)
        if cfg.rules.severity:  # rule codes are known to the catalogue only (imported when needed)
            from edi.validate import catalogue

            catalogue.check_overrides(cfg)
        partners.check_config(cfg)  # every configured key line parses, before anything is touched
    except (config_mod.ConfigError, partners.PartnerError) as exc:
        err.print(str(exc), highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    return cfg


def cfg(ctx: typer.Context) -> Config:
    """The configuration of this invocation (loaded by the root command, or here when a group's
    app runs on its own, as in tests)."""
    return config_mod.of_context(ctx, load)


def print_json(data) -> None:
    """`--json` output: for scripts, on stdout, nothing else there (logs go to stderr)."""
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def fail(message: str, hint: str = "") -> None:
    err.print(f"[red]Erreur :[/red] {message}" + (f"\n[yellow]→[/yellow] {hint}" if hint else ""), highlight=False,
              soft_wrap=True)
    raise typer.Exit(2)


def operator(by: str | None) -> str:
    """Who acts (`--by NAME`, else the operating-system user): the name recorded with the action."""
    import getpass

    from rich.markup import escape

    name = (by if by is not None else getpass.getuser()).strip()
    if not name or len(name) > 64 or not name.isprintable():
        fail(f"opérateur « {escape(name)} » invalide", "donnez --by NOM (1 à 64 caractères imprimables)")
    return name


def shown(found, as_json: bool, missing: str, hint: str = "") -> bool:
    """The shared start of every `show`: a record not found is the refusal line (exit 2); with
    `--json` it is printed for scripts and the command is done (True)."""
    if found is None:
        fail(missing, hint)
    if as_json:
        print_json(found)
    return as_json


def yes(flag: bool) -> str:
    return "oui" if flag else "non"
