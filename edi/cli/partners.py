"""`edi partners ...`: manage the operators' accounts (command names are a contract, issue 4).

    edi partners add APP --name NAME --key FILE [--interface CODE]...
    edi partners list [--json]
    edi partners disable APP
    edi partners enable APP
    edi partners key add APP FILE
    edi partners key remove APP FILE
    edi partners password APP [--clear]

The root command loads the configuration (`edi.cli.common`); run alone, this app loads the
default one. Every command first loads the `[[partners]]` of the configuration into the
database, so the list is right even before `edi serve` has run once.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edi import partners
from edi.cli.common import cfg as _cfg
from edi.cli.common import print_json, yes
from edi.ingest.sftp.server import host_key_fingerprint

app = typer.Typer(help="Partenaires (opérateurs) : comptes SFTP, clés, interfaces.", no_args_is_help=True)
key_app = typer.Typer(help="Clés publiques d'un partenaire.", no_args_is_help=True)
app.add_typer(key_app, name="key")


@app.callback()
def _main(ctx: typer.Context) -> None:
    cfg = _cfg(ctx)
    ctx.obj = cfg
    with _refused():
        partners.load_from_config(cfg)


def _fail(exc: Exception) -> None:
    typer.echo(f"erreur : {exc}", err=True)
    raise typer.Exit(code=2)


@contextmanager
def _refused(*also: type[Exception]):
    """A refused partner operation (`PartnerError`, or `also`) ends the command with its line."""
    try:
        yield
    except (partners.PartnerError, *also) as exc:
        _fail(exc)


@app.command("add")
def add_cmd(
    ctx: typer.Context,
    app_code: str = typer.Argument(..., metavar="APP", help="Code application (3 à 8 majuscules/chiffres)."),
    name: str = typer.Option(..., "--name", help="Nom du partenaire."),
    key: Path = typer.Option(..., "--key", exists=True, dir_okay=False, help="Fichier de clé publique OpenSSH."),
    interface: list[str] = typer.Option(None, "--interface", help="Code interface autorisé (répétable ; "
                                        "aucun = toutes)."),
) -> None:
    """Enregistrer un partenaire et sa clé publique."""
    cfg = _cfg(ctx)
    with _refused():
        info = partners.add(cfg.database_url, app_code, name, key, interface or ())
    typer.echo(f"partenaire {info.app} enregistré ({len(info.keys)} clé(s), interfaces : "
               f"{', '.join(info.interfaces) or 'toutes'})")


@app.command("list")
def list_cmd(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Sortie JSON.")) -> None:
    """Lister les partenaires, leurs clés, et l'empreinte de la clé d'hôte SFTP."""
    cfg = _cfg(ctx)
    items = partners.list_partners(cfg.database_url)
    fingerprint = host_key_fingerprint(cfg)
    if as_json:
        print_json({
            "sftp_host_key": fingerprint,
            "partners": [
                {
                    "app": p.app, "name": p.name, "interfaces": list(p.interfaces) or list(partners.INTERFACES),
                    "role": p.role, "sirets": list(p.sirets), "enabled": p.enabled, "password": p.has_password,
                    "keys": [{"type": k.key_type, "fingerprint": k.fingerprint, "comment": k.comment} for k in p.keys],
                    "created_at": p.created_at.isoformat(),
                }
                for p in items
            ],
        })
        return
    table = Table(title="Partenaires")
    for col in ("APP", "Nom", "Interfaces", "Actif", "Mot de passe", "Clés"):
        table.add_column(col)
    for p in items:
        table.add_row(
            p.app, p.name, ", ".join(p.interfaces) or "toutes", yes(p.enabled),
            yes(p.has_password),
            "\n".join(f"{k.key_type} {k.fingerprint} {k.comment}".strip() for k in p.keys) or "-",
        )
    console = Console()
    console.print(table)
    console.print(f"Clé d'hôte SFTP : {fingerprint}")


@app.command("disable")
def disable_cmd(ctx: typer.Context, app_code: str = typer.Argument(..., metavar="APP")) -> None:
    """Désactiver un partenaire : toute connexion est refusée, les sessions ouvertes sont fermées."""
    with _refused():
        partners.disable(_cfg(ctx).database_url, app_code)
    typer.echo(f"partenaire {app_code} désactivé")


@app.command("enable")
def enable_cmd(ctx: typer.Context, app_code: str = typer.Argument(..., metavar="APP")) -> None:
    """Réactiver un partenaire."""
    with _refused():
        partners.enable(_cfg(ctx).database_url, app_code)
    typer.echo(f"partenaire {app_code} activé")


@app.command("password")
def password_cmd(
    ctx: typer.Context,
    app_code: str = typer.Argument(..., metavar="APP"),
    clear: bool = typer.Option(False, "--clear", help="Supprimer le mot de passe."),
) -> None:
    """Définir (saisie masquée) ou supprimer le mot de passe SFTP, conservé haché (scrypt)."""
    password = None if clear else typer.prompt("Mot de passe", hide_input=True, confirmation_prompt=True)
    with _refused():
        partners.set_password(_cfg(ctx).database_url, app_code, password)
    typer.echo(f"mot de passe de {app_code} {'supprimé' if clear else 'enregistré'}")


@key_app.command("add")
def key_add_cmd(
    ctx: typer.Context,
    app_code: str = typer.Argument(..., metavar="APP"),
    key_file: Path = typer.Argument(..., metavar="FILE", exists=True, dir_okay=False),
) -> None:
    """Autoriser la ou les clés publiques d'un fichier."""
    with _refused():
        added = partners.add_key(_cfg(ctx).database_url, app_code, key_file)
    typer.echo(f"{added} clé(s) ajoutée(s) à {app_code}")


@key_app.command("remove")
def key_remove_cmd(
    ctx: typer.Context,
    app_code: str = typer.Argument(..., metavar="APP"),
    key_file: str = typer.Argument(..., metavar="FILE", help="Fichier de clé publique, ou empreinte SHA256:..."),
) -> None:
    """Retirer la ou les clés publiques d'un fichier (ou une empreinte SHA256:...)."""
    with _refused(OSError):
        removed = partners.remove_key(_cfg(ctx).database_url, app_code, key_file)
    typer.echo(f"{removed} clé(s) retirée(s) de {app_code}")
