"""edi.validate.native: EN 16931 rules compiled from the official XSLT, run without Saxon.

The bar is the differential one: on every document, the native engine fires exactly the
(rule id, flag, location) set Saxon fires — generated UBL and CII invoices with every error
kind, credit notes, and one-change mutations (element removed/emptied/bad code, amount moved by
a cent or a third decimal, attribute removed/bad) and insertions of the paths the rules forbid,
and a score of the targeted documents (`corpus`: full invoices and their variants).
This is the fast subset; the benchmark runs
the whole corpus (`benchmarks/schematron.py --differential`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from edi.validate import pool, schematron
from edi import gen
from edi.validate.native import compiler, differential, engine_for
from edi.validate.native.corpus import documents as targeted_documents
from edi.validate.native.rules import NativeRules
from edi.validate.native.xpath import Compiler, XPathError, decimal_divide

SAMPLES = Path(__file__).parent / "samples" / "schematron"
UBL = (SAMPLES / "ubl_invoice.xml").read_bytes()


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, bytes]]:
    docs = list(gen.differential_corpus(4, seed=7, errors=0.75))
    # the richest of each syntax (most tax subtotals): rules then run on one of several siblings
    ubl = max((raw for name, raw in docs if name.startswith("FSO1100A") and "avoir" not in name),
              key=lambda raw: raw.count(b"<cac:TaxSubtotal>"))
    cii = max((raw for name, raw in docs if name.startswith("FSO1106A") and "avoir" not in name),
              key=lambda raw: raw.count(b"<ram:ApplicableTradeTax>"))
    assert ubl.count(b"<cac:TaxSubtotal>") >= 2
    docs += list(differential.insertions(ubl, "EN16931-UBL"))[::60]  # forbidden paths added
    for raw in (ubl, cii):
        changed = list(differential.mutations(raw))
        docs += changed[:: max(1, len(changed) // 12)]  # a dozen, spread over the document
        # and every amount removed: rules on one of several sibling groups (tax subtotals, lines)
        docs += [m for m in changed if m[0].split("#")[0].endswith("Amount") and m[0].endswith(":remove")]
        # what the generator never writes: other VAT categories, optional groups, doubled elements
        targeted = list(differential.targeted(raw))
        docs += targeted[:: max(1, len(targeted) // 15)]
        doubled = list(differential.duplications(raw))
        docs += doubled[:: max(1, len(doubled) // 8)]
    return docs


def test_native_agrees_with_saxon_on_every_document(corpus):
    report = differential.compare(corpus)
    assert report.documents == len(corpus) >= 30
    assert report.disagreements == [], "\n".join(map(str, report.disagreements))
    assert report.agreement == 1.0
    # the corpus is not trivially clean: rules fire, on both engines
    assert report.fired["BR-CO-15"] >= 1 and len(report.fired) >= 10


def test_differential_reports_a_disagreement(monkeypatch):
    """The harness can fail: a native engine that loses a rule is caught."""
    broken = UBL.replace(b'TaxInclusiveAmount currencyID="EUR">240.00', b'TaxInclusiveAmount currencyID="EUR">250.00')
    broken = broken.replace(b'PayableAmount currencyID="EUR">240.00', b'PayableAmount currencyID="EUR">250.00')
    engine = engine_for("EN16931-UBL")
    real_run = engine.run
    monkeypatch.setattr(engine, "run", lambda el, seen=None: [h for h in real_run(el, seen) if h.id != "BR-CO-15"])
    report = differential.compare([("broken.xml", broken)])
    assert report.agreed == 0
    [disagreement] = report.disagreements
    assert [i for i, _, _ in disagreement.only_saxon] == ["BR-CO-15"] and disagreement.only_native == []
    assert "BR-CO-15" in differential.render(report)


def test_native_findings_equal_saxon_findings():
    """Same Finding objects (code, severity, reason, message, location) through the switch."""
    broken = UBL.replace(b"<cbc:InvoiceTypeCode>380", b"<cbc:InvoiceTypeCode>999")
    native = schematron.for_syntax("UBL", engine="native")[0]
    assert isinstance(native, NativeRules)
    assert native.check(broken, "F1") == schematron.for_ruleset("EN16931-UBL").check(broken, "F1")
    assert [f.code for f in native.check(broken, "F1")] == ["BR-CL-01"]
    assert native.check(UBL) == []


def test_dynamic_error_is_an_error_on_both_engines():
    bad = UBL.replace(b'<cbc:TaxInclusiveAmount currencyID="EUR">240.00', b'<cbc:TaxInclusiveAmount currencyID="EUR">x')
    with pytest.raises(schematron.SchematronError):
        schematron.for_ruleset("EN16931-UBL").check(bad)
    with pytest.raises(schematron.SchematronError, match="EN16931-UBL"):
        NativeRules("EN16931-UBL").check(bad)


def test_repeated_element_and_bad_boolean_stop_both_engines():
    """XPath 1.0 takes the first of several nodes and reads a bad boolean as false; Saxon stops:
    the native engine's generated code keeps XPath 2.0's one-item and cast errors, so it stops too."""
    doubled = [d for d in differential.duplications(UBL) if d[0].startswith("CustomizationID#")]
    rich = dict(differential.targeted(UBL))["optional-groups"]
    assert rich.count(b"<cbc:ChargeIndicator>false</cbc:ChargeIndicator>") >= 1
    bad = rich.replace(b"<cbc:ChargeIndicator>false</cbc:ChargeIndicator>",
                       b"<cbc:ChargeIndicator>ZZ</cbc:ChargeIndicator>", 1)
    docs = [*doubled, ("bad-boolean", bad)]
    for _, raw in docs:
        assert isinstance(differential.saxon_hits("EN16931-UBL", raw), str)
        assert isinstance(differential.native_hits("EN16931-UBL", raw), str)
    assert differential.compare(docs).disagreements == []
    # the same document without the fault: no error in either engine
    assert not isinstance(differential.native_hits("EN16931-UBL", rich), str)
    assert not isinstance(differential.saxon_hits("EN16931-UBL", rich), str)


def test_targeted_documents_exercise_other_vat_categories():
    docs = [d for d in differential.targeted(UBL) if d[0].startswith(("vat-AE", "vat-E"))]
    report = differential.compare(docs)
    assert report.disagreements == []
    seen = report.seen["EN16931-UBL"]
    for rule in ("BR-AE-05", "BR-AE-10", "BR-E-05", "BR-E-10"):  # fired and passed
        assert min(seen[rule]) >= 1, (rule, seen[rule])


# --- XPath 2.0 semantics, against Saxon itself ------------------------------------------------

EXPRESSIONS = [
    "1 div 3", "2 div 3", "100.10 div 3", "5 div 10000000000000000000",
    "xs:decimal(0.285e0) * 100", "round(xs:decimal(0.285e0) * 100) div 100", "round(-2.5)", "round(2.5)",
    "xs:decimal('1.005') * 100", "round(xs:decimal('1.005') * 100) div 100", "sum((0.1e0, 0.2e0))",
    "xs:decimal(sum((0.1e0, 0.2e0)))", "abs(-1.50)", "xs:decimal('12.50') + xs:decimal('0.005')",
]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_arithmetic_as_saxon(expr):
    from saxonche import PySaxonProcessor

    with PySaxonProcessor(license=False) as proc:
        expected = proc.new_xpath_processor().evaluate_single(f"string({expr})").get_string_value()
    c = Compiler({"xs": "http://www.w3.org/2001/XMLSchema"}, {})
    [value] = c.compile(expr, {})(etree.fromstring(b"<a/>"), {})
    got = value if not isinstance(value, float) else value
    if isinstance(got, Decimal):
        assert Decimal(expected) == got
    else:
        assert float(expected) == float(got)


def test_decimal_division_scale():
    assert str(decimal_divide(Decimal(1), Decimal(3))) == "0.333333333333333333"
    assert decimal_divide(Decimal(5), Decimal("1E19")) == Decimal("5E-19")  # exact when it terminates


def test_bad_number_is_an_error_not_nan():
    c = Compiler({}, {})
    fn = c.compile("a >= 0", {})
    assert fn(etree.fromstring(b"<r><a>1</a></r>"), {}) == [True]
    with pytest.raises(XPathError):
        fn(etree.fromstring(b"<r><a>x</a></r>"), {})


# --- compiler and cache -----------------------------------------------------------------------

def test_compiler_reads_every_assert():
    rules = compiler.compile_stylesheet(schematron.xslt_path("EN16931-UBL"), "EN16931-UBL")
    text = schematron.xslt_path("EN16931-UBL").read_text(encoding="utf-8")
    assert len([c for c in rules.checks() if c.kind == "assert"]) == text.count("<svrl:failed-assert")
    [br16] = [c for c in rules.checks() if c.id == "BR-16"]
    assert br16.flag == "fatal" and "BR-16" in "".join(v for _, v in br16.text)
    cii = compiler.compile_stylesheet(schematron.xslt_path("EN16931-CII"), "EN16931-CII")
    assert cii.codelists and all(cii.codelists.values())  # Factur-X code lists loaded at compile time


def test_cache_keyed_by_stylesheet_hash(tmp_path, monkeypatch):
    source = schematron.xslt_path("EN16931-UBL")
    first = compiler.load(source, "EN16931-UBL", cache=tmp_path)
    [cached] = tmp_path.glob("*.json")
    assert cached.name.startswith(first.sha256)

    def no_compile(*_a, **_k):
        raise AssertionError("recompiled although cached")

    monkeypatch.setattr(compiler, "compile_stylesheet", no_compile)
    again = compiler.load(source, "EN16931-UBL", cache=tmp_path)
    assert again.checks() == first.checks()
    # a new release (other bytes) is compiled again, never served from the old entry
    release = tmp_path / "new" / source.name
    release.parent.mkdir()
    release.write_bytes(source.read_bytes() + b"\n<!-- new release -->\n")
    monkeypatch.undo()
    newer = compiler.load(release, "EN16931-UBL", cache=tmp_path)
    assert newer.sha256 != first.sha256 and len(list(tmp_path.glob("*.json"))) == 2


def test_french_rules_fall_back_to_saxon_with_a_reason():
    from edi.validate.native import rules as native_rules

    sets = schematron.for_syntax("UBL", french=True, engine="native")
    assert isinstance(sets[0], NativeRules)
    assert isinstance(sets[1], schematron.Schematron)  # BR-FR: xsl:functions of its own
    assert "is-valid-id-format" in native_rules._refused["BR-FR-UBL"]


def test_native_switch_starts_no_saxon(tmp_path):
    """Through pool.check_raw with engine "native": findings, and Saxon never imported."""
    code = (
        "import sys, json\n"
        "from datetime import date\n"
        "from edi.validate import pool, schematron\n"
        f"raw = open({str(SAMPLES / 'ubl_invoice.xml')!r}, 'rb').read().replace(b'>380<', b'>999<')\n"
        "data, findings = pool.check_raw(raw, pool.Settings(engine='native'), date(2025, 3, 1))\n"
        "print(json.dumps({'codes': [f.code for f in findings if f.code.startswith('BR')],\n"
        "                  'saxon': 'saxonche' in sys.modules, 'compiled': schematron.compilations}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"EDI_NATIVE_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"},
                         cwd=Path(__file__).parent.parent)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"codes": ["BR-CL-01"], "saxon": False, "compiled": {}}
    assert list(tmp_path.glob("*.json"))  # the compiled form went to the configured cache


def _in_fresh_process(cache: Path, code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"EDI_NATIVE_CACHE": str(cache), "PATH": "/usr/bin:/bin"},
                         cwd=Path(__file__).parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_generated_code_is_cached_and_reused_without_parsing(tmp_path):
    """The first process generates the rules' code and stores it under the stylesheet's hash;
    the next one runs from it without parsing any XPath (elementpath never imported), with the
    same findings; a damaged entry is generated again."""
    code = (
        "import sys, json\n"
        "from lxml import etree\n"
        "from edi.validate.native import engine_for\n"
        f"raw = open({str(SAMPLES / 'ubl_invoice.xml')!r}, 'rb').read().replace(b'>380<', b'>999<')\n"
        "hits = engine_for('EN16931-UBL').run(etree.fromstring(raw))\n"
        "print(json.dumps({'hits': sorted(h.id for h in hits), 'parsed': 'elementpath' in sys.modules}))\n"
    )
    first = _in_fresh_process(tmp_path, code)
    [generated] = tmp_path.glob("*.gen-*.json")
    second = _in_fresh_process(tmp_path, code)
    assert "BR-CL-01" in first["hits"] and first["parsed"] is True
    assert second == {"hits": first["hits"], "parsed": False}
    generated.write_text("{not json", encoding="utf-8")
    third = _in_fresh_process(tmp_path, code)
    assert third == {"hits": first["hits"], "parsed": True}
    assert json.loads(generated.read_text(encoding="utf-8"))["source"].startswith("def ")


def test_settings_carry_the_engine():
    assert pool.Settings().engine == "native"
    assert pool.rule_versions("UBL", pool.Settings(engine="native"))[1].endswith("moteur natif")


def _payment_means(ids: list[str], code_name: str = "") -> bytes:
    """The sample with one PaymentMeans per id (a `name` attribute on the code when given)."""
    attr = f' name="{code_name}"' if code_name else ""
    means = "".join(f"<cac:PaymentMeans><cbc:PaymentMeansCode{attr}>30</cbc:PaymentMeansCode>"
                    f"<cbc:PaymentID>{i}</cbc:PaymentID></cac:PaymentMeans>" for i in ids)
    start = UBL.index(b"<cac:PaymentMeans>")
    end = UBL.index(b"</cac:PaymentMeans>") + len(b"</cac:PaymentMeans>")
    return UBL[:start] + means.encode() + UBL[end:]


def test_preceding_axis_and_attributes_anywhere_agree_with_saxon():
    """UBL-SR-44 (`count(//cbc:PaymentID[not(preceding::cbc:PaymentID/. = .)]) <= 1`) and
    UBL-DT-18 (`count(//@name) - count(//cbc:PaymentMeansCode/@name) <= 0`) are generated with a
    `preceding::` step and a `//@name` selection: both engines on documents that fire and pass them."""
    other = UBL.replace(b"<cbc:IssueDate>", b'<cbc:Note name="x">n</cbc:Note><cbc:IssueDate>', 1)
    assert other != UBL
    docs = [("two-ids", _payment_means(["A1", "B2"])), ("same-ids", _payment_means(["A1", "A1"])),
            ("code-name", _payment_means(["A1"], "virement")), ("other-name", other)]
    report = differential.compare(docs)
    assert report.disagreements == []
    seen = report.seen["EN16931-UBL"]
    for rule in ("UBL-SR-44", "UBL-DT-18"):
        assert min(seen[rule]) >= 1, (rule, seen[rule])
    assert "UBL-SR-44" in {rule for rule, _, _ in differential.native_hits("EN16931-UBL", docs[0][1])}


# --- targeted documents (edi.validate.native.corpus): the rules generated invoices never reach ---

@pytest.fixture(scope="module")
def clean() -> dict[str, bytes]:
    """One clean generated invoice per syntax (no error written)."""
    docs = list(gen.differential_corpus(1, seed=1, errors=0))
    return {"UBL": next(raw for name, raw in docs if "FSO1100A" in name and "avoir" not in name),
            "CII": next(raw for name, raw in docs if "FSO1106A" in name and "avoir" not in name)}


def _exercised(raw: bytes, ruleset: str, names: list[str], rules: list[str]) -> None:
    """The named targeted documents agree on both engines, the full one fires nothing, and each
    rule is seen both firing and passing among them."""
    docs = dict(targeted_documents(raw))
    assert differential.saxon_hits(ruleset, docs["full"]) == differential.native_hits(ruleset, docs["full"]) == {}
    report = differential.compare([(n, docs[n]) for n in names])
    assert report.documents == len(names) and report.disagreements == [], "\n".join(map(str, report.disagreements))
    seen = report.seen[ruleset]
    assert [r for r in rules if min(seen.get(r, [0, 0])) == 0] == []


def test_full_ubl_and_its_variants_exercise_optional_group_rules(clean):
    forbidden = ["UBL-CR-002", "UBL-CR-412", "UBL-CR-652", "UBL-CR-666", "UBL-CR-674", "UBL-CR-680", "UBL-DT-18"]
    names = ["full", *forbidden, "period-reversed", "tax-point-date", "no-reasons", "long-card-number",
             "note-bad-subject", "bad-unit", "full:vat-O:mixed", "full:vat-S:reason", "full:vat-E:wrong-basis", "full:vat-E:single-rate"]
    _exercised(clean["UBL"], "EN16931-UBL", names, [
        *forbidden, "BR-29", "BR-30", "BR-CO-03", "BR-33", "BR-38", "BR-42", "BR-44", "BR-CO-21", "BR-CO-24",
        "BR-51", "BR-CL-08", "BR-CL-23", "BR-O-11", "BR-O-12", "BR-O-13", "BR-O-14", "BR-S-10", "BR-E-08"])


def test_full_cii_and_its_variants_exercise_optional_group_rules(clean):
    names = ["full", "period-reversed", "period-empty", "tax-point-and-code", "no-reasons", "long-card-number",
             "contact-department", "no-lines", "bad-currencies", "bad-unit", "seller-unidentified",
             "full:vat-E", "full:vat-E:consistent", "full:vat-L:consistent", "full:vat-L:settlement-rate",
             "full:vat-Z:one-line-breakdown"]
    _exercised(clean["CII"], "EN16931-CII", names, [
        "BR-29", "BR-30", "BR-CO-19", "BR-CO-20", "BR-CO-03", "BR-33", "BR-38", "BR-42", "BR-44", "BR-51",
        "CII-SR-465", "CII-SR-466", "BR-CO-26", "BR-E-06", "BR-E-07", "BR-AF-08", "BR-S-01", "FX-SCH-A-000265",
        "FX-SCH-A-000606", "FX-SCH-A-000607", "FX-SCH-A-000612", "FX-SCH-A-000613"])


def _tax_total_in(currency_amount: str) -> bytes:
    """The sample with a second, subtotal-less tax total in a tax currency holding `currency_amount`."""
    raw = UBL.replace(b"</cbc:DocumentCurrencyCode>",
                      b"</cbc:DocumentCurrencyCode><cbc:TaxCurrencyCode>USD</cbc:TaxCurrencyCode>", 1)
    return raw.replace(b"<cac:LegalMonetaryTotal>", b"<cac:TaxTotal>" + currency_amount.encode()
                       + b"</cac:TaxTotal><cac:LegalMonetaryTotal>", 1)


def test_an_error_on_one_side_of_or_does_not_stop_when_the_other_side_decides():
    """BR-CO-14 `(xs:decimal(cbc:TaxAmount) = ...) or not(cac:TaxSubtotal)` on a tax total with no
    subtotal and an amount that is no number (or empty, or doubled): Saxon answers true from the
    right side, never raising the cast error of the left one; so does the native engine."""
    amounts = ['<cbc:TaxAmount currencyID="USD">ZZ</cbc:TaxAmount>', '<cbc:TaxAmount currencyID="USD"/>',
               '<cbc:TaxAmount currencyID="USD">1</cbc:TaxAmount>' * 2]
    docs = [(f"tax-total-{i}", _tax_total_in(a)) for i, a in enumerate(amounts)]
    assert all(b"TaxCurrencyCode" in raw for _, raw in docs)
    report = differential.compare(docs)
    assert report.disagreements == []
    assert all(not isinstance(differential.native_hits("EN16931-UBL", raw), str) for _, raw in docs)


def test_parent_of_the_root_is_the_document_node():
    """UBL-CR-412 `not(cac:PaymentMeans/cbc:PaymentDueDate) or ../cn:CreditNote`: from the root
    element, `..` is the document node, whose child is the credit note itself."""
    note = differential.credit_note(UBL)
    assert b"<cbc:PaymentMeansCode>" in note
    due = note.replace(b"</cbc:PaymentMeansCode>",
                       b"</cbc:PaymentMeansCode><cbc:PaymentDueDate>2026-11-08</cbc:PaymentDueDate>", 1)
    invoice = UBL.replace(b"</cbc:PaymentMeansCode>",
                          b"</cbc:PaymentMeansCode><cbc:PaymentDueDate>2026-11-08</cbc:PaymentDueDate>", 1)
    report = differential.compare([("credit-note-due", due), ("invoice-due", invoice)])
    assert report.disagreements == []
    assert min(report.seen["EN16931-UBL"]["UBL-CR-412"]) >= 1  # fires on the invoice only
