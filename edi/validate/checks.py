"""Invoice-level checks: one invoice in, its findings out (the flow goes on either way).

Order: XSD of its syntax, then routing against the directory. An invoice whose XSD fails is
not routed: its routing data cannot be trusted, and the report should name the first problem.
"""

from __future__ import annotations

from collections.abc import Mapping

from lxml import etree

from edi.invoice import InvoiceData
from edi.route.routing import check_routing
from edi.validate import xsd
from edi.validate.finding import Finding


def check_invoice(
    element: etree._Element, data: InvoiceData, directory, ej_patterns: Mapping[str, str]
) -> list[Finding]:
    findings = xsd.validate(element, invoice_number=data.number)
    if findings:
        return findings
    return check_routing(
        recipient_siret=data.recipient_siret,
        code_service=data.code_service,
        ej=data.ej,
        directory=directory,
        ej_patterns=ej_patterns,
        invoice_number=data.number,
        locations={
            "siret": data.location("recipient_siret"),
            "code_service": data.location("code_service"),
            "ej": data.location("ej"),
        },
    )
