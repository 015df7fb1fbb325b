"""`edi` command line (typer + rich). Command names, options and outputs are a contract
(design.md): operators script against them.

One module per command group — `run` (the top-level init, ingest, serve, web, gen), `directory`,
`flows`, `invoices`, `reprocess` (the top-level `edi reprocess`), `config`, `partners`, `reports`, `rules`, `users` (console accounts) — sharing `common` (the one
configuration loader, JSON output, error line). Every command loads and checks the
configuration (`--config FILE`, else `EDI_CONFIG`, else `config/edi.toml`) before anything else,
and creates or upgrades the database schema when it needs to.
"""

from __future__ import annotations

from edi.cli import config, directory, flows, invoices, partners, reports, reprocess, rules, users
from edi.cli.run import app

app.command("reprocess")(reprocess.reprocess_cmd)

for _name, _group in (("directory", directory.app), ("flows", flows.app), ("invoices", invoices.app),
                      ("config", config.app), ("partners", partners.app), ("reports", reports.app),
                      ("rules", rules.app), ("users", users.app)):
    app.add_typer(_group, name=_name)

__all__ = ["app"]
