"""Invoice-level checks after the document checks: routing, platform rules, severities.

`Context` is built once per flow: the directory lookups (memoised for the flow, so a
re-import is seen by the next flow), the EJ patterns, the platform-rule context (today, the
invoices already seen in this flow, the database lookup of invoices already deposited) and the
per-rule severity overrides of the configuration (`[rules.severity]`: fatal | warning | off),
resolved for the findings of every stage by `edi.validate.severity`. An invoice whose XSD failed is neither routed nor put
through the platform rules: its data cannot be trusted, and the report should name the first
real problem. Only invoices that end up accepted count for later duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date


from edi import db
from edi.config import Config
from edi.invoice import InvoiceData
from edi.route.directory import Directory
from edi.route.routing import check_routing
from edi.validate import rules, severity
from edi.finding import Finding
from edi.validate.pool import Settings


class DepositedLookup:
    """`already_deposited(supplier, number, year)`: an invoice accepted at integration with
    that key exists (invoices rejected at integration do not count; invoices the recipient
    rejected later do — a rejected invoice is reissued under a new number).

    It runs once per invoice, so it holds one driver connection for the flow and sends plain
    prepared queries (SQLAlchemy's per-statement overhead was most of its cost); the pipeline
    asks for a batch of invoices at once first (`prefetch`: one statement instead of one an
    invoice), and each invoice is then answered from memory."""

    SQL = ("SELECT 1 FROM invoice WHERE supplier_id = {p} AND number = {p} AND accepted = {t} "
           "AND issue_date LIKE {p} AND flow_id <> {p} LIMIT 1")
    # one index search per (supplier, number) (an OR of pairs: SQLite scans the table for a row-value IN)
    BATCH_SQL = "SELECT supplier_id, number, issue_date FROM invoice WHERE accepted = {t} AND flow_id <> {p} AND ({keys})"
    BATCH_KEY = "(supplier_id = {p} AND number = {p})"

    def __init__(self, url: str, flow_id: int = 0):
        self.flow_id = flow_id  # the flow being checked: its own invoices (a reprocess) are no duplicates
        self.engine = db.engine_for(url)
        self._conn = None
        self._known: dict[tuple[str, str, int], bool] = {}  # answers of the last prefetch
        style = self.engine.dialect.paramstyle
        self._p = "?" if style == "qmark" else "%s"
        self._t = "1" if self.engine.dialect.name == "sqlite" else "TRUE"
        self.sql = self.SQL.format(p=self._p, t=self._t)

    def __call__(self, supplier: str, number: str, year: int) -> bool:
        known = self._known.get((supplier, number, year))
        if known is not None:
            return known
        cursor = self._cursor()
        try:
            cursor.execute(self.sql, (supplier, number, f"{year:04d}-%", self.flow_id))
            return cursor.fetchone() is not None
        finally:
            cursor.close()

    def prefetch(self, keys: Iterable[tuple[str, str, int] | None]) -> None:
        """Look up these keys (`rules.duplicate_key`, None skipped) in one statement; until the
        next prefetch, `__call__` answers them from memory. Same answers as one query a key:
        same supplier and number, accepted, another flow, issue date starting with the year."""
        wanted = {key for key in keys if key is not None}
        self._known = dict.fromkeys(wanted, False)
        if not wanted:
            return
        pairs = sorted({(supplier, number) for supplier, number, _ in wanted})
        sql = self.BATCH_SQL.format(p=self._p, t=self._t,
                                    keys=" OR ".join([self.BATCH_KEY.format(p=self._p)] * len(pairs)))
        cursor = self._cursor()
        try:
            cursor.execute(sql, (self.flow_id, *(value for pair in pairs for value in pair)))
            for supplier, number, issued in cursor.fetchall():
                for key in wanted:
                    if key[:2] == (supplier, number) and issued.startswith(f"{key[2]:04d}-"):
                        self._known[key] = True
        finally:
            cursor.close()

    def _cursor(self):
        if self._conn is None:
            self._conn = self.engine.raw_connection()
        return self._conn.cursor()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class Context:
    settings: Settings
    directory: object
    ej_patterns: Mapping[str, str]
    rules: rules.RuleContext

    @classmethod
    def for_flow(cls, cfg: Config, interface: str, syntax: str = "", flow_id: int = 0) -> Context:
        overrides = dict(cfg.rules.severity)
        settings = Settings(schematron=cfg.validation.schematron, french=interface in cfg.rules.french,
                            overrides=tuple(sorted(overrides.items())), engine=cfg.validation.engine)
        rule_context = rules.RuleContext(
            today=date.today(), syntax=syntax, seen_in_flow=set(),
            already_deposited=DepositedLookup(cfg.database_url, flow_id), severity_overrides=overrides,
        )
        return cls(settings=settings, directory=Directory(cfg.database_url), ej_patterns=cfg.ej_patterns,
                   rules=rule_context)

    def prefetch(self, invoices: Iterable[InvoiceData]) -> None:
        """The database's duplicate answers for these invoices, in one query, before `finish`
        runs on each of them in turn."""
        self.rules.already_deposited.prefetch(rules.duplicate_key(data) for data in invoices)

    def finish(self, data: InvoiceData, document: list[Finding]) -> list[Finding]:
        """All findings of one invoice, in report order: those of `pool.check_raw` (document,
        then the stateless platform rules), then duplicates and routing, which need the flow's
        memory and the database and so run here, in flow order."""
        findings = list(document)
        key = rules.duplicate_key(data)
        # a key already there belongs to an earlier accepted invoice of the flow: keep it
        known = key in self.rules.seen_in_flow
        if not any(f.code == "XSD" for f in document):
            findings += rules.check(data, self.rules, codes=rules.DUPLICATE_CODES)
            findings += check_routing(
                recipient_siret=data.recipient_siret, code_service=data.code_service, ej=data.ej,
                directory=self.directory, ej_patterns=self.ej_patterns, invoice_number=data.number,
                locations={"siret": data.location("recipient_siret"),
                           "code_service": data.location("code_service"), "ej": data.location("ej")},
            )
        findings = severity.apply(findings, self.rules.severity_overrides)
        if any(f.fatal for f in findings) and not known:
            self.rules.seen_in_flow.discard(key)
        return findings

    def close(self) -> None:
        self.rules.already_deposited.close()
