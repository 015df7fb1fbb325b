"""A finding: one problem found in a flow or an invoice.

Plain data passed between the check stages, the database and the reports. Severity `fatal`
rejects (the invoice, or the whole flow for `IRR_*` codes); `warning` is reported only.
"""

from __future__ import annotations

from dataclasses import dataclass

FATAL = "fatal"
WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Finding:
    code: str  # rule code: IRR_SYNTAX, BR-CO-15, XSD, or a platform rule code
    reason: str  # reform reason code (NatureErreur): IRR_SYNTAX, DEST_INC, REJ_SEMAN, ...
    message: str  # one line, French, as the user reads it
    severity: str = FATAL
    location: str = ""  # XPath or field name of the offending value
    value: str = ""  # the offending value, when there is one
    invoice_number: str = ""  # empty for flow-level findings

    @property
    def fatal(self) -> bool:
        return self.severity == FATAL
