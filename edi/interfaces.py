"""The interfaces a sender may deposit, and the syntaxes they carry: one table for every stage.

Design, "Flow file names" and "Inbound formats". A new interface or syntax is added here, and
only here: name checks, splitting, XSD warm-up and the schematron rule sets all read this table.
It is a lower-layer module: it imports no stage (ingest, validate, route, reports).

>>> INTERFACES["FSO1106A"].syntax.name
'CII'
>>> INTERFACES["FSO1110A"].extensions
('xml',)
"""

from __future__ import annotations

from dataclasses import dataclass

UBL_INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
UBL_CREDITNOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
UBL_CAC_NS = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
UBL_CBC_NS = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
UBL_EXT_NS = "urn:oasis:names:specification:ubl:schema:xsd:CommonExtensionComponents-2"
CII_NS = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
CII_RAM_NS = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
CII_UDT_NS = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
CII_QDT_NS = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"

# Root elements, Clark notation ({namespace}local; the CPP shapes have no namespace).
UBL_INVOICE = f"{{{UBL_INVOICE_NS}}}Invoice"
UBL_CREDITNOTE = f"{{{UBL_CREDITNOTE_NS}}}CreditNote"
CII = f"{{{CII_NS}}}CrossIndustryInvoice"
CPP_FLOW = "CPPFactureMixte"  # the whole bulk flow
CPP_ENVELOPE = "Enveloppe"
CPP_INVOICES = "CPPFactures"  # holds the invoices, @Compteur = how many
CPP_INVOICE = "CPPFactureMixteUnitaire"  # one invoice of the bulk flow
CPP_STATUS = "CPPStatut"  # a status flow (and the platform's reports)
CPP_STATUS_LINES = "CPPFactureStatuts"  # holds the invoice statuses, @compteur = how many
CPP_STATUS_LINE = "CPPFactureStatutUnitaire"  # one status of one invoice


@dataclass(frozen=True)
class Syntax:
    """One invoice syntax: what its documents look like and which rules check them."""

    name: str  # "UBL" | "CII" | "CPP"
    roots: tuple[str, ...]  # root element of a deposited document (Clark notation)
    invoice_roots: tuple[str, ...]  # element holding one invoice
    xsd_kind: str  # the XSD compiled ahead of the first invoice (edi.validate.xsd kinds)
    rule_sets: tuple[str, ...] = ()  # EN 16931 schematron, then the French reform rules


@dataclass(frozen=True)
class Interface:
    """One deposit interface (the first part of a flow file name)."""

    code: str
    syntax: Syntax
    extensions: tuple[str, ...]  # accepted file extensions
    label: str
    role: str = "sender"  # the partners who may send it: senders (invoices) or recipients (statuses)


UBL = Syntax("UBL", (UBL_INVOICE, UBL_CREDITNOTE), (UBL_INVOICE, UBL_CREDITNOTE), "UBL-Invoice",
             ("EN16931-UBL", "BR-FR-UBL"))
CII_SYNTAX = Syntax("CII", (CII,), (CII,), "CII", ("EN16931-CII", "BR-FR-CII"))
CPP = Syntax("CPP", (CPP_FLOW,), (CPP_INVOICE,), "CPP")
#: Statuses of invoices, not invoices: no invoice root, no rule set (edi.ingest.statuses reads them).
STATUT = Syntax("CPPStatut", (CPP_STATUS,), (), "CPPStatut")

SYNTAXES: dict[str, Syntax] = {s.name: s for s in (UBL, CII_SYNTAX, CPP, STATUT)}

INTERFACES: dict[str, Interface] = {i.code: i for i in (
    Interface("FSO1100A", UBL, ("xml", "tar.gz"), "E1 UBL 2.1 Invoice / CreditNote"),
    Interface("FSO1106A", CII_SYNTAX, ("xml", "tar.gz"), "E1 CII D16B CrossIndustryInvoice"),
    Interface("FSO1110A", CPP, ("xml",), "CPP bulk XML (CPPFactureMixte V1.17)"),
    Interface("FEN1200A", STATUT, ("xml",), "Statuts de factures d'un destinataire (CPPStatut V1_19)",
              role="recipient"),
)}

#: Every extension some interface accepts (a flow name with another one is IRR_TYPE).
EXTENSIONS: tuple[str, ...] = tuple(dict.fromkeys(e for i in INTERFACES.values() for e in i.extensions))
