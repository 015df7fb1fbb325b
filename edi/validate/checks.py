"""Invoice-level checks after the document checks: routing and platform rules, severities.

`Context` is built once per flow: the directory lookups (memoised for the flow, so a
re-import is seen by the next flow), the EJ patterns, the per-rule severity overrides of the
configuration (`[rules.severity]`, "fatal" | "warning" | "off"), and the duplicate memory.
An invoice whose XSD failed is not routed: its routing data cannot be trusted, and the report
should name the first real problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from edi.config import Config
from edi.invoice import InvoiceData
from edi.route.directory import Directory
from edi.route.routing import check_routing
from edi.validate.finding import FATAL, WARNING, Finding
from edi.validate.pool import Settings


def apply_severity(findings: list[Finding], overrides: Mapping[str, str]) -> list[Finding]:
    """Downgrade, upgrade or drop findings as the configuration says, rule by rule."""
    if not overrides:
        return findings
    out = []
    for f in findings:
        wanted = overrides.get(f.code)
        if wanted == "off":
            continue
        if wanted in (FATAL, WARNING) and wanted != f.severity:
            f = replace(f, severity=wanted)
        out.append(f)
    return out


@dataclass
class Context:
    settings: Settings
    directory: object
    ej_patterns: Mapping[str, str]
    overrides: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_flow(cls, cfg: Config, interface: str) -> Context:
        validation = cfg.data["validation"]
        rules = cfg.data["rules"]
        settings = Settings(schematron=bool(validation.get("schematron", True)),
                            french=interface in (rules.get("french") or ()))
        return cls(settings=settings, directory=Directory(cfg.database_url), ej_patterns=cfg.ej_patterns,
                   overrides={str(k): str(v) for k, v in (rules.get("severity") or {}).items()})

    def finish(self, data: InvoiceData, document: list[Finding]) -> list[Finding]:
        """All findings of one invoice, in report order: document, routing."""
        findings = list(document)
        if not any(f.code == "XSD" for f in document):
            findings += check_routing(
                recipient_siret=data.recipient_siret, code_service=data.code_service, ej=data.ej,
                directory=self.directory, ej_patterns=self.ej_patterns, invoice_number=data.number,
                locations={"siret": data.location("recipient_siret"),
                           "code_service": data.location("code_service"), "ej": data.location("ej")},
            )
        return apply_severity(findings, self.overrides)
