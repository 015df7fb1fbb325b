"""Platform rules: the management rules Chorus Pro applies on top of the formats, as pure code.

Each rule is a small function over `edi.invoice.InvoiceData` (one uniform view of UBL, CII and
CPP), registered with `@rule` under a stable code (`PLT-nn`, never renumbered, only added),
a default severity, a one-line French message, the reform reason code it reports (reference
§2.6) and the syntaxes it applies to. A rule yields `Hit`s (the offending field, its value,
its position in a repeated group, a short detail); `check` turns them into `Finding`s whose
location is the field's path in the invoice's own syntax (`data.location(field)`).

Codes are grouped by subject:

| codes      | subject |
|------------|---------|
| PLT-01..06 | supplier identifier (absent, type, SIRET, EU VAT, RIDET, TAHITI) |
| PLT-10..13 | invoice number (absent, length, characters) |
| PLT-20..21 | duplicates (already deposited, twice in the flow) |
| PLT-30..36 | amounts of CPP invoices (sums, VAT, rates, decimals, lines) |
| PLT-40..43 | payment (IBAN for a transfer, credit notes) |
| PLT-50..53 | cadre de facturation and dates |

Choices where the reference leaves room (reference = shared/reference/chorus-pro-edi-facts.md):

- SIRET (type 1): 14 ASCII digits, then `stdnum.fr.siret` (Luhn, and the La Poste exception:
  SIREN 356000000 establishments only need a digit sum that is a multiple of 5, §3.1).
  The same test as the recipient SIRET (`edi.route.routing.siret_shape_error`).
- Other identifier types are checked by shape only (Chorus Pro checks foreign identifiers by
  shape, §3.1): 2 EU VAT = `stdnum.eu.vat.is_valid` (country format and check digits) with a
  prefix other than FR (a French supplier is identified by its SIRET); 4 RIDET (New Caledonia)
  = 6 or 7 digits of RID + 3 digits of establishment, spaces and dots ignored; 5 TAHITI
  (French Polynesia) = one letter or digit + 5 digits, optionally + 3 digits of establishment;
  3 (outside the EU), 6 (registration pending) and 7 (private person): present is enough. For
  UBL/CII the type is derived from the identifier by `edi.invoice.supplier_id_type`: "" means
  it is neither a SIRET, nor a non-French EU VAT number, nor an identifier from outside the EU
  (a SIREN or a French VAT number alone, say), which PLT-02 rejects: Chorus Pro needs the
  SIRET of a French supplier (§3.6).
- Invoice number: at most 20 characters in CPP (§3.3, also in our CPP XSD: the rule keeps it
  when the XSD step is skipped or changes). Characters `[A-Za-z0-9+-_/]`, no space (BR-FR-02,
  §3.3): fatal for UBL/CII (PLT-12), whose 2026 rules demand it; only a warning for the legacy
  CPP format (PLT-13), which never restricted them, so existing numbering plans keep flowing
  while suppliers are told.
- Duplicates: key = supplier identifier (as written, trimmed) + invoice number + year of the
  issue date. "Already deposited" is asked of the caller (`RuleContext.already_deposited`, a
  database query counting integrated invoices, including those the recipient rejected later,
  and not those rejected at integration); "twice in the flow" uses `RuleContext.seen_in_flow`,
  which `check` fills with the key of each invoice it does not reject (so an invoice rejected
  at integration does not make its corrected twin a duplicate). A later stage that still
  rejects the invoice should `discard(duplicate_key(data))`.
- Amounts (CPP only; the EN 16931 schematron covers UBL and CII): tolerance `TOLERANCE` = 0.01
  (one cent) on sums and on base x rate / 100, stated in each message. VAT rates: the reform's
  closed list (§3.4, S22 `is-valid-vat-rate`), the only published list; it holds the current
  metropolitan, Corsican and overseas rates and the pre-2014 ones (7, 19.6), so it fits legacy
  invoices too. Decimals: amounts 2 at most (a euro amount has cents, the one-cent tolerance
  relies on it, and BR-FR-DEC-01 says the same), unit prices and quantities 6 at most (E1 rule,
  §1.3), 19 digits in all; trailing zeros are not counted ("12.500" is 12.50).
- Payment: credit transfer codes are 30, 31, 42 in CPP (§3.4) and 30, 58 (SEPA) in UBL/CII
  (UNCL 4461); the account must be a valid IBAN (`stdnum.iban`, spaces allowed). A CPP credit
  note carries no payment means (§3.4); our CPP XSD makes `ModePaiement/Code` mandatory, so
  code 01 "non défini" counts as none (PLT-41, fatal). UBL/CII credit notes may carry payment
  means in EN 16931 (a refund by transfer), so there it is only a warning (PLT-42).
- Cadre de facturation: A1..A25 without A11 (§3.5). CPP: whenever present. UBL/CII: only when
  the value looks like a legacy code (`A` + digits); profile URNs and the reform's B1/S1/M1...
  codes are BR-FR-08's business.
- Dates: a real calendar date `AAAA-MM-JJ` (an xs:date time zone is accepted), issue date not
  after `RuleContext.today`; a due date before the issue date is a warning (BR-FR-CO-07, §3.3,
  except deposit invoices 386/500/503 and frames B2/S2/M2).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import lru_cache

from stdnum import iban as stdnum_iban
from stdnum.eu import vat as eu_vat

from edi.invoice import CII_SYNTAX, CPP, UBL, InvoiceData
from edi.route.routing import siret_shape_error
from edi.finding import FATAL, WARNING, Finding
from edi.validate import severity as severity_mod


ALL = frozenset({UBL, CII_SYNTAX, CPP})
UBL_CII = frozenset({UBL, CII_SYNTAX})
CPP_ONLY = frozenset({CPP})

#: Allowed difference on sums and on base x rate / 100: one cent.
TOLERANCE = Decimal("0.01")

#: Reform VAT rates (reference §3.4, S22 `is-valid-vat-rate`), in percent.
VAT_RATES = frozenset(Decimal(r) for r in (
    "0", "0.9", "1.05", "1.75", "2.1", "5.5", "7", "8.5", "9.2", "9.6", "10", "13", "19.6",
    "20", "20.6"))

#: Legacy cadres de facturation (reference §3.5): A1..A25, there is no A11.
LEGACY_CADRES = frozenset(f"A{n}" for n in range(1, 26) if n != 11)

CPP_TRANSFER_CODES = frozenset({30, 31, 42})  # virement, "virement débit", compte bancaire
UBL_CII_TRANSFER_CODES = frozenset({"30", "58"})  # credit transfer, SEPA credit transfer
CPP_NO_PAYMENT = frozenset({1})  # 01 "non défini"

MAX_CPP_NUMBER = 20
MAX_AMOUNT_DECIMALS = 2
MAX_PRICE_DECIMALS = 6
MAX_DIGITS = 19

_NUMBER_CHARS = re.compile(r"[A-Za-z0-9+\-_/]+", re.ASCII)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:Z|[+-]\d{2}:\d{2})?", re.ASCII)
_LEGACY_LOOKING = re.compile(r"A\d+")
_RIDET = re.compile(r"\d{6,7}\d{3}", re.ASCII)
_TAHITI = re.compile(r"[A-Z0-9]\d{5}(?:\d{3})?", re.ASCII)
_SEPARATORS = re.compile(r"[\s.]")
_DEPOSIT_TYPES = frozenset({"386", "500", "503"})  # BR-FR-CO-07 exceptions
_PAID_CADRES = frozenset({"B2", "S2", "M2"})


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True)
class Hit:
    """One offending value found by a rule."""

    field: str  # InvoiceData field, or "group.part" ("vat.amount", "lines.net_amount")
    value: str = ""
    index: int | None = None  # 1-based position in the repeated group, when there is one
    detail: str = ""  # appended to the message: the figures that disagree, ...


@dataclass(frozen=True, slots=True)
class Rule:
    code: str  # stable: PLT-nn
    name: str  # the function's name, for readers of the catalogue
    severity: str  # default: fatal | warning
    reason: str  # reform reason code (NatureErreur)
    message: str  # one line, French
    syntaxes: frozenset[str]
    field: str  # the InvoiceData field it mainly looks at
    test: Callable[[InvoiceData, RuleContext], Iterable[Hit]]

    def applies_to(self, syntax: str) -> bool:
        return syntax in self.syntaxes


#: code -> Rule, in code order (which is also the order of the findings of one invoice).
RULES: dict[str, Rule] = {}


def rule(code: str, *, severity: str, reason: str, message: str, syntaxes: frozenset[str],
         field: str):
    """Register a rule function under a stable code (never reused, never renumbered)."""
    if severity not in (FATAL, WARNING):
        raise ValueError(f"{code}: severity must be fatal or warning")

    def register(fn: Callable[[InvoiceData, RuleContext], Iterable[Hit]]):
        if code in RULES:
            raise ValueError(f"duplicate rule code {code}")
        RULES[code] = Rule(code, fn.__name__, severity, reason, message, syntaxes, field, fn)
        return fn

    return register


@dataclass
class RuleContext:
    """What a rule may know besides the invoice. Plain data, built once per flow.

    `already_deposited(supplier_id, number, year)` and `seen_in_flow` are optional: without
    them the duplicate rules do not run (e.g. in a worker process, when the parent process
    runs them in flow order with `check(..., codes=DUPLICATE_CODES)`).
    """

    today: date
    syntax: str = ""  # the flow's syntax (UBL, CII, CPP); "" = the invoice's own
    seen_in_flow: set[tuple[str, str, int]] | None = None
    already_deposited: Callable[[str, str, int], bool] | None = None
    severity_overrides: Mapping[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- entry point


def check(data: InvoiceData, context: RuleContext,
          codes: Iterable[str] | None = None) -> list[Finding]:
    """Findings of the platform rules for one invoice, in code order then document order.

    Only the rules that apply to the syntax run; `codes` restricts them further. Severity
    comes from `context.severity_overrides` (code -> fatal | warning | off) over the rule's
    default; "off" skips the rule. When the invoice gets no fatal finding and the duplicate
    rules ran, its key is added to `context.seen_in_flow`.
    """
    overrides = context.severity_overrides or {}
    plan, duplicates_ran = _plan(_syntax(data, context), None if codes is None else tuple(codes),
                                 frozenset(overrides.items()))
    findings: list[Finding] = []
    for r, severity in plan:
        for hit in r.test(data, context):
            findings.append(Finding(
                code=r.code,
                reason=r.reason,
                message=f"{r.message} — {hit.detail}" if hit.detail else r.message,
                severity=severity,
                location=_location(data, hit),
                value=hit.value,
                invoice_number=data.number,
            ))
    if context.seen_in_flow is not None and duplicates_ran and not any(f.fatal for f in findings):
        key = duplicate_key(data)
        if key is not None:
            context.seen_in_flow.add(key)
    return findings


@lru_cache(maxsize=64)
def _plan(syntax: str, codes: tuple[str, ...] | None,
          overrides: frozenset[tuple[str, str]]) -> tuple[tuple[tuple[Rule, str], ...], bool]:
    """The rules that run, with their severity, for a syntax, a choice of codes and the
    overrides, and whether the duplicate rules are among the codes: worked out once, not at
    every invoice (it was a third of `check`)."""
    wanted = None if codes is None else frozenset(codes)
    chosen = dict(overrides)
    plan = []
    for r in RULES.values():
        if not r.applies_to(syntax) or (wanted is not None and r.code not in wanted):
            continue
        severity = severity_mod.resolve(r.code, r.severity, chosen)
        if severity != severity_mod.OFF:
            plan.append((r, severity))
    return tuple(plan), wanted is None or bool(wanted & set(DUPLICATE_CODES))


def duplicate_key(data: InvoiceData) -> tuple[str, str, int] | None:
    """(supplier identifier, invoice number, year of issue), or None when one is missing."""
    supplier, number = data.supplier_id.strip(), data.number.strip()
    issued = parse_date(data.issue_date)
    if not supplier or not number or issued is None:
        return None
    return supplier, number, issued.year


def parse_date(text: str) -> date | None:
    """A real calendar date written AAAA-MM-JJ (optional xs:date time zone), else None.

    >>> parse_date("2024-02-29"), parse_date("2025-02-29"), parse_date("2025-3-1")
    (datetime.date(2024, 2, 29), None, None)
    """
    return _date(text) if text else None


@lru_cache(maxsize=4096)
def _date(text: str) -> date | None:
    """`parse_date`, remembered per text: an invoice's dates are read a dozen times (duplicate
    key, date rules) and the invoices of a flow share a few dates."""
    m = _DATE.fullmatch(text.strip())
    if m is None:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def _location(data: InvoiceData, hit: Hit) -> str:
    """The field's path; with a position, the repeated element gets it: Ligne[2]/MontantHT."""
    path = data.location(hit.field)
    if hit.index is None:
        return path
    group = data.location(hit.field.split(".", 1)[0])
    if path == group:
        return f"{group}[{hit.index}]"
    if path.startswith(group + "/"):
        return f"{group}[{hit.index}]{path[len(group):]}"
    return f"{path}[{hit.index}]"


def _int_code(text: str) -> int | None:
    """CPP integer codes: "30" and "030" are the same value."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _compact(text: str) -> str:
    return _SEPARATORS.sub("", text).upper()


def _syntax(data: InvoiceData, ctx: RuleContext) -> str:
    return ctx.syntax or data.syntax


def _supplier_type(data: InvoiceData) -> int | None:
    return _int_code(data.supplier_id_type)


# --------------------------------------------------------------------------- identifiers


@rule("PLT-01", severity=FATAL, reason="SIRET_ERR", syntaxes=ALL, field="supplier_id",
      message="L'identifiant du fournisseur est absent")
def supplier_id_present(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    if not data.supplier_id.strip():
        yield Hit("supplier_id")


@rule("PLT-02", severity=FATAL, reason="SIRET_ERR", syntaxes=ALL, field="supplier_id_type",
      message="Type d'identifiant du fournisseur inconnu : attendu un SIRET, une TVA "
              "intracommunautaire hors France, un identifiant hors UE, un RIDET ou un numéro "
              "TAHITI")
def supplier_id_type_known(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    if not data.supplier_id.strip():
        return  # PLT-01 says so
    if _syntax(data, ctx) == CPP:
        if _supplier_type(data) not in range(1, 8):  # 1..7 (reference §3.1)
            yield Hit("supplier_id_type", data.supplier_id_type)
    elif not data.supplier_id_type:
        yield Hit("supplier_id", data.supplier_id,
                  detail="ni SIRET (14 chiffres), ni TVA intracommunautaire hors France")


@rule("PLT-03", severity=FATAL, reason="SIRET_ERR", syntaxes=ALL, field="supplier_id",
      message="Le SIRET du fournisseur est invalide (14 chiffres et clé de contrôle)")
def supplier_siret(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    siret = data.supplier_id.strip()
    if _supplier_type(data) == 1 and siret and siret_shape_error(siret) is not None:
        yield Hit("supplier_id", siret)


@rule("PLT-04", severity=FATAL, reason="REJ_SEMAN", syntaxes=ALL, field="supplier_id",
      message="Le numéro de TVA intracommunautaire du fournisseur est invalide (État membre "
              "autre que la France, format et clé du pays)")
def supplier_eu_vat(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    number = data.supplier_id.strip()
    if _supplier_type(data) != 2 or not number:
        return
    compact = _compact(number)
    if compact.startswith("FR") or not eu_vat.is_valid(compact):
        yield Hit("supplier_id", number)


@rule("PLT-05", severity=FATAL, reason="REJ_SEMAN", syntaxes=ALL, field="supplier_id",
      message="Le numéro RIDET du fournisseur est invalide (6 ou 7 chiffres puis 3 chiffres "
              "d'établissement)")
def supplier_ridet(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    number = data.supplier_id.strip()
    if _supplier_type(data) == 4 and number and not _RIDET.fullmatch(_compact(number)):
        yield Hit("supplier_id", number)


@rule("PLT-06", severity=FATAL, reason="REJ_SEMAN", syntaxes=ALL, field="supplier_id",
      message="Le numéro TAHITI du fournisseur est invalide (6 caractères : une lettre ou un "
              "chiffre puis 5 chiffres, suivis éventuellement de 3 chiffres d'établissement)")
def supplier_tahiti(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    number = data.supplier_id.strip()
    if _supplier_type(data) == 5 and number and not _TAHITI.fullmatch(_compact(number)):
        yield Hit("supplier_id", number)


# --------------------------------------------------------------------------- invoice number


@rule("PLT-10", severity=FATAL, reason="REJ_SEMAN", syntaxes=ALL, field="number",
      message="Le numéro de facture est absent")
def number_present(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    if not data.number.strip():
        yield Hit("number")


@rule("PLT-11", severity=FATAL, reason="REJ_SEMAN", syntaxes=CPP_ONLY, field="number",
      message=f"Le numéro de facture dépasse {MAX_CPP_NUMBER} caractères (format CPP)")
def number_length_cpp(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    if len(data.number) > MAX_CPP_NUMBER:
        yield Hit("number", data.number, detail=f"{len(data.number)} caractères")


_CHARSET_MESSAGE = ("Le numéro de facture contient des caractères non autorisés (autorisés : "
                    "lettres, chiffres, + - _ /, sans espace)")


def _bad_number_chars(data: InvoiceData) -> Iterator[Hit]:
    if data.number and not _NUMBER_CHARS.fullmatch(data.number):
        bad = sorted({c for c in data.number if not _NUMBER_CHARS.fullmatch(c)})
        shown = ", ".join("espace" if c == " " else f"« {c} »" for c in bad)
        yield Hit("number", data.number, detail=shown)


@rule("PLT-12", severity=FATAL, reason="REJ_SEMAN", syntaxes=UBL_CII, field="number",
      message=_CHARSET_MESSAGE)
def number_charset(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    yield from _bad_number_chars(data)


@rule("PLT-13", severity=WARNING, reason="REJ_SEMAN", syntaxes=CPP_ONLY, field="number",
      message=_CHARSET_MESSAGE + " ; toléré en format CPP, refusé dans les formats de 2026")
def number_charset_cpp(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    yield from _bad_number_chars(data)


# --------------------------------------------------------------------------- duplicates


@rule("PLT-20", severity=FATAL, reason="DOUBLON", syntaxes=ALL, field="number",
      message="Facture en doublon : même fournisseur, même numéro et même année qu'une "
              "facture déjà déposée")
def duplicate_deposited(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    key = duplicate_key(data)
    if key is not None and ctx.already_deposited is not None and ctx.already_deposited(*key):
        yield Hit("number", data.number, detail=f"fournisseur {key[0]}, année {key[2]}")


@rule("PLT-21", severity=FATAL, reason="DOUBLON", syntaxes=ALL, field="number",
      message="Facture en doublon dans le flux : même fournisseur, même numéro et même année "
              "qu'une facture précédente du flux")
def duplicate_in_flow(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    key = duplicate_key(data)
    if key is not None and ctx.seen_in_flow is not None and key in ctx.seen_in_flow:
        yield Hit("number", data.number, detail=f"fournisseur {key[0]}, année {key[2]}")


DUPLICATE_CODES = ("PLT-20", "PLT-21")


# --------------------------------------------------------------------------- amounts (CPP)


def _close(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) <= TOLERANCE


@rule("PLT-30", severity=FATAL, reason="MONTANTTOTAL_ERR", syntaxes=CPP_ONLY, field="total_ht",
      message="La somme des montants HT des lignes diffère du montant HT de la facture (écart "
              "toléré : 0,01)")
def lines_sum(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    nets = [line.net_amount for line in data.lines]
    if not nets or data.total_ht is None or any(n is None for n in nets):
        return  # no lines: PLT-36; unreadable amounts: the XSD says so
    total = sum(nets, Decimal(0))
    if not _close(total, data.total_ht):
        yield Hit("total_ht", str(data.total_ht), detail=f"somme des lignes {total}")


@rule("PLT-31", severity=FATAL, reason="MONTANTTOTAL_ERR", syntaxes=CPP_ONLY, field="total_vat",
      message="La somme des montants de TVA diffère du montant TTC moins le montant HT (écart "
              "toléré : 0,01)")
def vat_sum(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    amounts = [v.amount for v in data.vat]
    if data.total_ht is None or data.total_ttc is None or any(a is None for a in amounts):
        return
    total = sum(amounts, Decimal(0))
    expected = data.total_ttc - data.total_ht
    if not _close(total, expected):
        yield Hit("total_vat", str(total), detail=f"TTC − HT = {expected}")


@rule("PLT-32", severity=FATAL, reason="MONTANTTOTAL_ERR", syntaxes=CPP_ONLY,
      field="net_to_pay", message="Le montant net à payer dépasse le montant TTC")
def net_to_pay_within_ttc(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    if data.net_to_pay is not None and data.total_ttc is not None and (
            data.net_to_pay > data.total_ttc):
        yield Hit("net_to_pay", str(data.net_to_pay), detail=f"TTC {data.total_ttc}")


@rule("PLT-33", severity=FATAL, reason="TX_TVA_ERR", syntaxes=CPP_ONLY, field="vat.rate",
      message="Taux de TVA non autorisé (taux admis : 0 ; 0,9 ; 1,05 ; 1,75 ; 2,1 ; 5,5 ; 7 ; "
              "8,5 ; 9,2 ; 9,6 ; 10 ; 13 ; 19,6 ; 20 ; 20,6)")
def vat_rate_allowed(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    for i, v in enumerate(data.vat, 1):
        if v.rate is not None and v.rate not in VAT_RATES:
            yield Hit("vat.rate", str(v.rate), index=i)
    for i, line in enumerate(data.lines, 1):
        if line.vat_rate is not None and line.vat_rate not in VAT_RATES:
            yield Hit("lines.vat_rate", str(line.vat_rate), index=i)


@rule("PLT-34", severity=FATAL, reason="CALCUL_ERR", syntaxes=CPP_ONLY, field="vat.amount",
      message="Montant de TVA différent de base HT × taux / 100 (écart toléré : 0,01)")
def vat_amount_computed(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    for i, v in enumerate(data.vat, 1):
        if v.rate is None or v.base is None or v.amount is None:
            continue
        expected = v.base * v.rate / 100
        if not _close(v.amount, expected):
            yield Hit("vat.amount", str(v.amount), index=i,
                      detail=f"{v.base} × {v.rate} / 100 = {expected.normalize():f}")


def _too_precise(value: Decimal | None, decimals: int) -> bool:
    """More than `decimals` significant decimals, or more than MAX_DIGITS digits in all."""
    if value is None or not value.is_finite():
        return False
    _, digits, exponent = value.normalize().as_tuple()
    places = max(0, -exponent)
    integer_digits = max(0, len(digits) + exponent)
    return places > decimals or integer_digits + places > MAX_DIGITS


@rule("PLT-35", severity=FATAL, reason="REJ_SEMAN", syntaxes=CPP_ONLY, field="total_ht",
      message="Trop de décimales : montants 2 au plus, prix unitaires et quantités 6 au plus, "
              "19 chiffres au total")
def decimals(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    for name in ("total_ht", "total_ttc", "net_to_pay"):
        value = getattr(data, name)
        if _too_precise(value, MAX_AMOUNT_DECIMALS):
            yield Hit(name, str(value))
    for i, v in enumerate(data.vat, 1):
        for part in ("base", "amount"):
            if _too_precise(getattr(v, part), MAX_AMOUNT_DECIMALS):
                yield Hit(f"vat.{part}", str(getattr(v, part)), index=i)
    for i, line in enumerate(data.lines, 1):
        for part, places in (("unit_price", MAX_PRICE_DECIMALS), ("quantity", MAX_PRICE_DECIMALS),
                             ("net_amount", MAX_AMOUNT_DECIMALS)):
            if _too_precise(getattr(line, part), places):
                yield Hit(f"lines.{part}", str(getattr(line, part)), index=i)


@rule("PLT-36", severity=FATAL, reason="REJ_SEMAN", syntaxes=CPP_ONLY, field="lines",
      message="Les lignes de facture sont obligatoires dans un flux FSO1110A (au moins une "
              "ligne)")
def lines_present(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    if not data.lines:
        yield Hit("lines")


# --------------------------------------------------------------------------- payment


def _is_transfer(data: InvoiceData, ctx: RuleContext) -> bool:
    if _syntax(data, ctx) == CPP:
        return _int_code(data.payment_means) in CPP_TRANSFER_CODES
    return data.payment_means.strip() in UBL_CII_TRANSFER_CODES


# Remembered per account: a supplier's invoices carry the same IBAN (python-stdnum: ~40 µs each).
_valid_iban = lru_cache(maxsize=4096)(stdnum_iban.is_valid)


@rule("PLT-40", severity=FATAL, reason="COORD_BANC_ERR", syntaxes=ALL, field="iban",
      message="Paiement par virement : un IBAN valide du fournisseur est obligatoire")
def transfer_needs_iban(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    if _is_transfer(data, ctx) and not _valid_iban(data.iban.strip()):
        yield Hit("iban", data.iban.strip(),
                  detail="IBAN absent" if not data.iban.strip() else "IBAN invalide")


@rule("PLT-41", severity=FATAL, reason="MODPAI_ERR", syntaxes=CPP_ONLY, field="payment_means",
      message="Un avoir (381) ne porte pas de mode de paiement (code vide ou 01 « non défini »)")
def credit_note_without_payment_cpp(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    code = data.payment_means.strip()
    if data.doc_type.strip() == "381" and code and _int_code(code) not in CPP_NO_PAYMENT:
        yield Hit("payment_means", code)


@rule("PLT-42", severity=WARNING, reason="MODPAI_ERR", syntaxes=UBL_CII, field="payment_means",
      message="Un avoir (381) ne devrait pas porter de moyen de paiement (Chorus Pro l'attend "
              "vide)")
def credit_note_without_payment(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    code = data.payment_means.strip()
    if data.doc_type.strip() == "381" and code:
        yield Hit("payment_means", code)


@rule("PLT-43", severity=WARNING, reason="REF_ERR", syntaxes=ALL, field="original_invoice",
      message="Avoir sans numéro de la facture d'origine")
def credit_note_refers_to_invoice(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    if data.doc_type.strip() == "381" and not data.original_invoice.strip():
        yield Hit("original_invoice")


# --------------------------------------------------------------------------- cadre, dates


@rule("PLT-50", severity=FATAL, reason="REJ_SEMAN", syntaxes=ALL, field="cadre",
      message="Cadre de facturation inconnu : attendu A1 à A25 (A11 n'existe pas)")
def cadre_legacy(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    cadre = data.cadre.strip()
    if not cadre or cadre in LEGACY_CADRES:
        return
    if _syntax(data, ctx) == CPP or _LEGACY_LOOKING.fullmatch(cadre):
        yield Hit("cadre", cadre)


@rule("PLT-51", severity=FATAL, reason="REJ_SEMAN", syntaxes=ALL, field="issue_date",
      message="Date invalide : attendu une date réelle au format AAAA-MM-JJ")
def dates_real(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    if parse_date(data.issue_date) is None:
        yield Hit("issue_date", data.issue_date,
                  detail="date d'émission absente" if not data.issue_date else "")
    if data.due_date and parse_date(data.due_date) is None:
        yield Hit("due_date", data.due_date)


@rule("PLT-52", severity=FATAL, reason="REJ_SEMAN", syntaxes=ALL, field="issue_date",
      message="La date d'émission de la facture est postérieure à la date du jour")
def issue_date_not_future(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    issued = parse_date(data.issue_date)
    if issued is not None and issued > ctx.today:
        yield Hit("issue_date", data.issue_date, detail=f"aujourd'hui {ctx.today.isoformat()}")


@rule("PLT-53", severity=WARNING, reason="REJ_SEMAN", syntaxes=ALL, field="due_date",
      message="La date d'échéance précède la date d'émission (BR-FR-CO-07)")
def due_date_after_issue(data: InvoiceData, ctx: RuleContext) -> Iterator[Hit]:
    issued, due = parse_date(data.issue_date), parse_date(data.due_date)
    if issued is None or due is None or due >= issued:
        return
    if data.doc_type.strip() in _DEPOSIT_TYPES or data.cadre.strip() in _PAID_CADRES:
        return
    yield Hit("due_date", data.due_date, detail=f"émise le {data.issue_date}")
