"""A rule set checked by the native engine, with the same face as `schematron.Schematron`.

`schematron.for_syntax(..., engine="native")` hands these out; a rule set the compiler cannot
fully handle (the BR-FR stylesheets call `xsl:function`s of their own) stays on Saxon, and the
reason is logged once per process and rule set.
"""

from __future__ import annotations

from lxml import etree

from edi import log
from edi.finding import Finding
from edi.validate import schematron
from edi.validate.native import NotNative, engine_for
from edi.validate.native.xpath import XPathError

LOG = log.get("edi.validate.native")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
_refused: dict[str, str] = {}  # rule set -> why it runs on Saxon


class NativeRules:
    """One rule set on the native engine."""

    __slots__ = ("ruleset", "_reference")

    def __init__(self, ruleset: str) -> None:
        self.ruleset = ruleset
        self._reference = schematron.for_ruleset(ruleset)

    def __repr__(self) -> str:
        return f"NativeRules({self.ruleset!r})"

    @property
    def version(self) -> str:
        return f"{self._reference.version}, moteur natif"

    def compile(self) -> None:
        engine_for(self.ruleset)

    def check(self, xml_bytes: bytes, invoice_number: str = "", element: etree._Element | None = None
              ) -> list[Finding]:
        """Same findings as `Schematron.check` on the same document."""
        if element is None:
            if b"<!DOCTYPE" in xml_bytes:
                raise schematron.SchematronError("document refusé : déclaration DOCTYPE interdite")
            try:
                element = etree.fromstring(xml_bytes, _PARSER)
            except etree.XMLSyntaxError as exc:
                raise schematron.SchematronError(f"XML illisible : {exc}") from exc
        try:
            hits = engine_for(self.ruleset).run(element)
        except XPathError as exc:
            raise schematron.SchematronError(f"schematron {self.ruleset} : {exc}") from exc
        return [schematron.finding(h.id, h.flag, h.text, h.location, invoice_number)
                for h in hits if h.kind == "assert" or h.flag]


def rules_for(ruleset: str) -> NativeRules | schematron.Schematron:
    """The native rule set, or Saxon's when the compiler cannot handle it (said once)."""
    if ruleset not in _refused:
        try:
            engine_for(ruleset)
        except NotNative as exc:
            _refused[ruleset] = str(exc)
            LOG.warning("schematron_not_native", ruleset=ruleset, reason=str(exc), fallback="saxon")
        else:
            _refused[ruleset] = ""
    return schematron.for_ruleset(ruleset) if _refused[ruleset] else NativeRules(ruleset)
