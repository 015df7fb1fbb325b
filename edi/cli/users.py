"""`edi users ...` (console and API accounts) and `edi web` (the console alone).

    edi users add LOGIN --role ops|sender|recipient [--partner APP] [--password-stdin]
    edi users token LOGIN       # prints a new API token once (only its hash is kept)
    edi users list [--json]

`edi web` (the console alone) is with `serve` in `edi.cli.run`.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from edi.cli.common import cfg, console, err, fail, print_json, yes

app = typer.Typer(help="Comptes de la console web et de l'API.", no_args_is_help=True)


def _url(ctx: typer.Context) -> str:
    from edi import db

    url = cfg(ctx).database_url
    db.engine_for(url)
    return url


@app.command("add")
def add(
    ctx: typer.Context,
    login: str,
    role: str = typer.Option(..., "--role", help="ops, sender ou recipient."),
    partner: Optional[str] = typer.Option(None, "--partner", help="Code application du partenaire (sender, recipient)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Lire le mot de passe sur l'entrée standard."),
):
    """Create a console user; the password is asked twice (or read from stdin)."""
    from edi.web import users

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Mot de passe", hide_input=True, confirmation_prompt=True)
    try:
        user = users.add(_url(ctx), login, role, password, partner)
    except users.UserError as exc:
        fail(escape(str(exc)))
    console.print(f"Utilisateur {user.login} créé ({user.role}{' · ' + user.partner if user.partner else ''}).",
                  highlight=False)


@app.command("token")
def token(ctx: typer.Context, login: str):
    """Create (or replace) the user's API token and print it once."""
    from edi.web import users

    try:
        value = users.new_token(_url(ctx), login)
    except users.UserError as exc:
        fail(escape(str(exc)))
    err.print("Jeton d'API (affiché une seule fois ; à envoyer en « Authorization: Bearer … ») :")
    print(value)


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")):
    """List console users (never their secrets)."""
    from edi.web import users

    rows = users.list_users(_url(ctx))
    if as_json:
        print_json(rows)
        return
    table = Table("Identifiant", "Rôle", "Partenaire", "Jeton d'API", "Dernière connexion")
    for r in rows:
        table.add_row(r["login"], r["role"], r["partner"] or "", yes(r["token"]),
                      (r["last_login_at"] or "")[:19])
    console.print(table)
