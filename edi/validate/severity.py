"""The one severity resolver: every `[rules.severity]` override (code -> fatal | warning | off)
goes through `resolve`, whichever stage found the problem (XSD, schematron, platform rules,
routing).

Flow checks (`IRR_*`) and the XSD are `FIXED`: an irrecevable flow or a structurally invalid
invoice cannot be processed, so no override changes them. A configuration that tries is
refused when it is loaded (`edi.validate.catalogue.check_overrides`), and `resolve` ignores such
an override anyway, so no caller can switch them off by going around the check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from edi.finding import FATAL, WARNING, Finding
from edi.validate import flowchecks, xsd

OFF = "off"
SEVERITIES = (FATAL, WARNING, OFF)  # values allowed in `[rules.severity]`

#: Codes whose severity no override changes.
FIXED = frozenset(flowchecks.MESSAGES) | {xsd.CODE}


def resolve(code: str, default: str, overrides: Mapping[str, str]) -> str:
    """The severity of `code`: its override if it may have one, else `default`."""
    if code in FIXED:
        return default
    chosen = overrides.get(code, default)
    if chosen not in SEVERITIES:
        raise ValueError(f"sévérité « {chosen} » invalide pour {code} : attendu {', '.join(SEVERITIES)}")
    return chosen


def apply(findings: Iterable[Finding], overrides: Mapping[str, str]) -> list[Finding]:
    """Findings with their severity resolved; the ones switched "off" are dropped. Order kept."""
    out = []
    for f in findings:
        severity = resolve(f.code, f.severity, overrides)
        if severity == OFF:
            continue
        out.append(f if severity == f.severity else replace(f, severity=severity))
    return out
