"""Realistic invoice flow generator, for tests, benchmarks and `edi gen`.

`generate()` writes one correctly named flow (`<INTERFACE>_<APP>_<FLOWID>.<xml|tar.gz>`)
plus the two directory files that make its invoices routable (`structures.csv`,
`services.csv`, to load with `edi directory import`). Everything is deterministic for a
given seed (and reference date), and written incrementally so that flows of 10,000+
invoices never sit in memory.

Interfaces:

- FSO1110A: one CPPFactureMixte V1.17 XML, valid against AIFE's official
  `schemas/aife/CPPFactureMixte_V1.17.xsd` (Recepteur before Emetteur), envelope
  parameters DtPrd and IdFlx, one `CPPFactureMixteUnitaire` per invoice, each with a PJ
  TypePJ 01 (a small real PDF of the invoice, base64) and sometimes a PJ 02 (CSV).
- FSO1100A: UBL 2.1 Invoice; FSO1106A: CII D16B CrossIndustryInvoice, EN 16931 profile
  (guideline `urn:cen.eu:en16931:2017`). One XML per invoice: a single `.xml` for one
  invoice, else a `.tar.gz` whose members are `NNNNNN_<number>.xml`.

Where the routing data sit (the extractor reads exactly these):

============== ============================================== ==============================================
datum          UBL 2.1 (FSO1100A)                             CII D16B (FSO1106A)
============== ============================================== ==============================================
supplier SIRET cac:AccountingSupplierParty/cac:Party/          rsm:SupplyChainTradeTransaction/
               cac:PartyIdentification/cbc:ID[@schemeID=0009] ram:ApplicableHeaderTradeAgreement/
               (also cac:PartyLegalEntity/cbc:CompanyID        ram:SellerTradeParty/ram:GlobalID[@schemeID=0009]
               [@schemeID=0009])                              (SIREN in ram:SpecifiedLegalOrganization/
                                                              ram:ID[@schemeID=0002])
buyer SIRET    cac:AccountingCustomerParty/cac:Party/          .../ram:ApplicableHeaderTradeAgreement/
               cac:PartyIdentification/cbc:ID[@schemeID=0009] ram:BuyerTradeParty/ram:GlobalID[@schemeID=0009]
code service   cbc:BuyerReference                             .../ram:ApplicableHeaderTradeAgreement/
                                                              ram:BuyerReference
EJ             cac:OrderReference/cbc:ID                      .../ram:ApplicableHeaderTradeAgreement/
                                                              ram:BuyerOrderReferencedDocument/
                                                              ram:IssuerAssignedID
IBAN           cac:PaymentMeans/cac:PayeeFinancialAccount/     .../ram:ApplicableHeaderTradeSettlement/
               cbc:ID                                         ram:SpecifiedTradeSettlementPaymentMeans/
                                                              ram:PayeePartyCreditorFinancialAccount/ram:IBANID
============== ============================================== ==============================================

CPP: `Fournisseur/Identifiant` (TypeIdentifiant 1), `Debiteur/Identifiant`,
`Debiteur/CodeService`, `DonneesFacture/Engagement/NumeroEngagement`,
`Fournisseur/ReferenceBancaire[@Type='IBAN']/Compte`.

Directory: a fixed set of public structures (same for every seed, so several generated
flows share one directory), with one structure per routing rule: the State SIRET
11000201100044 (code service + EJ, EJ pattern `^14\\d{8}$`, see `EJ_PATTERNS`, to put in
`[directory] ej_patterns`), one with GestionService (one of its services has GestionEGMT),
one with GestionEngagement, one with GestionServiceEngagement, one with no rule, and one
inactive structure that no generated invoice targets. Every error-free invoice routes.

Error injection (`errors` = share of invoices, exactly `round(errors * invoices)`, each with
one error of a kind drawn from `kinds`): see `ERROR_KINDS`. Only the `xsd` kind breaks the
official schema; every other kind is a business error inside a schema-valid invoice.
"""

from __future__ import annotations

import base64
import calendar
import csv
import gzip
import hashlib
import io
import os
import random
import re
import tarfile
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from stdnum import iban as stdiban
from stdnum import luhn

__all__ = [
    "DEFAULT_KINDS",
    "DIRECTORY_SERVICES",
    "DIRECTORY_STRUCTURES",
    "EJ_PATTERNS",
    "ERROR_KINDS",
    "INTERFACES",
    "SERVICE_COLUMNS",
    "STATE_SIRET",
    "STRUCTURE_COLUMNS",
    "GeneratedFlow",
    "GeneratedInvoice",
    "Service",
    "Structure",
    "flow_id_for",
    "generate",
    "write_directory",
]

INTERFACES: dict[str, str] = {"FSO1110A": "cpp", "FSO1100A": "ubl", "FSO1106A": "cii"}

#: What each error kind does to one invoice (all other data stay valid and routable).
ERROR_KINDS: dict[str, str] = {
    "xsd": "schema-invalid but well-formed (mandatory element missing or bad code)",
    "recipient": "recipient SIRET valid but absent from the directory (DEST_INC)",
    "service": "code service missing where required, or unknown",
    "ej": "engagement (EJ) missing where required",
    "amount": "total with VAT is not HT + VAT (BR-CO-15, MONTANTTOTAL_ERR)",
    "siret": "supplier SIRET with a wrong check digit (SIRET_ERR)",
    "iban": "IBAN with wrong check digits (COORD_BANC_ERR)",
    "duplicate": "same number and supplier as an earlier invoice of the flow (DOUBLON)",
}
DEFAULT_KINDS: tuple[str, ...] = ("xsd", "recipient", "service", "ej")

STATE_SIRET = "11000201100044"
#: EJ patterns of the generated directory, for `[directory] ej_patterns`.
EJ_PATTERNS: dict[str, str] = {STATE_SIRET: r"^14\d{8}$"}

STRUCTURE_COLUMNS: tuple[str, ...] = (
    "TypeIdentifiant", "Identifiant", "RaisonSociale", "EmetteurEdi", "RecepteurEdi",
    "GestionStatutMiseEnPaiement", "GestionEngagement", "GestionService",
    "GestionServiceEngagement", "EstMOA", "EstMOAUniquement", "StructureActive", "Adresse",
    "ComplementAdresse1", "ComplementAdresse2", "CodePostal", "Ville", "NumTelephone",
    "Courriel", "CodePays", "LibellePays",
)
SERVICE_COLUMNS: tuple[str, ...] = ("Identifiant", "CodeService", "NomService", "GestionEGMT", "ServiceActif")

_APP_RE = re.compile(r"^[A-Z0-9]{3,8}$")
_FLOW_ID_RE = re.compile(r"^[A-Z0-9]{25}$")
_CENT = Decimal("0.01")
_RATES = (Decimal("20"), Decimal("10"), Decimal("5.5"), Decimal("2.1"))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class GeneratedInvoice:
    """What the generator put in one invoice, so tests can predict the outcome."""

    number: str
    recipient_siret: str
    code_service: str | None
    ej: str | None
    #: injected error kind (a key of ERROR_KINDS), None for a good invoice
    error: str | None
    supplier_siret: str
    #: tar member name (FSO1100A/FSO1106A with several invoices), else None
    member: str | None = None


@dataclass
class GeneratedFlow:
    path: Path
    flow_id: str
    interface: str
    invoices: list[GeneratedInvoice]
    structures_csv: Path
    services_csv: Path
    partner: str = "DEMO"

    @property
    def errors(self) -> list[GeneratedInvoice]:
        return [i for i in self.invoices if i.error]


# --------------------------------------------------------------------------- identifiers


def _siren(prefix8: str) -> str:
    return prefix8 + luhn.calc_check_digit(prefix8)


def _siret(siren: str, nic4: str) -> str:
    body = siren + nic4
    return body + luhn.calc_check_digit(body)


def _vat_fr(siren: str) -> str:
    key = (12 + 3 * (int(siren) % 97)) % 97
    return f"FR{key:02d}{siren}"


def _rib_key(bank: str, branch: str, account: str) -> str:
    return f"{97 - (89 * int(bank) + 15 * int(branch) + 3 * int(account)) % 97:02d}"


def _iban_fr(bank: str, branch: str, account: str) -> str:
    bban = bank + branch + account + _rib_key(bank, branch, account)
    return "FR" + stdiban.calc_check_digits("FR00" + bban) + bban


def _break_iban(value: str) -> str:
    """Same account, check digits off by 50 (never 0 mod 97, so always invalid)."""
    return value[:2] + f"{(int(value[2:4]) + 50) % 100:02d}" + value[4:]


def _break_siret(value: str) -> str:
    """Change the last digit: Luhn catches every single-digit change."""
    return value[:-1] + str((int(value[-1]) + 5) % 10)


# --------------------------------------------------------------------------- directory


@dataclass(frozen=True, slots=True)
class Structure:
    siret: str
    name: str
    address: str
    postcode: str
    city: str
    phone: str
    email: str
    gestion_service: bool = False
    gestion_engagement: bool = False
    gestion_service_engagement: bool = False
    statut_mise_en_paiement: bool = False
    moa: bool = False
    moa_only: bool = False
    active: bool = True
    emetteur_edi: bool = False
    recepteur_edi: bool = False


@dataclass(frozen=True, slots=True)
class Service:
    siret: str
    code: str
    name: str
    egmt: bool = False
    active: bool = True


_COMMUNE = _siret(_siren("21380042"), "0011")
_HOPITAL = _siret(_siren("26380031"), "0017")
_DEPARTEMENT = _siret(_siren("22380001"), "0013")
_LYCEE = _siret(_siren("19380023"), "0010")
_SIVOM = _siret(_siren("25380112"), "0015")

DIRECTORY_STRUCTURES: tuple[Structure, ...] = (
    Structure(STATE_SIRET, "AGENCE POUR L'INFORMATIQUE FINANCIERE DE L'ETAT",
              "10 rue Auguste Blanqui", "93100", "Montreuil", "0144970000",
              "factures.aife@finances.gouv.fr", gestion_service=True, gestion_engagement=True,
              statut_mise_en_paiement=True, recepteur_edi=True),
    Structure(_COMMUNE, "COMMUNE DE SAINT-MARTIN-LE-VINOUX", "1 place de la Mairie", "38950",
              "Saint-Martin-le-Vinoux", "0476750000", "comptabilite@mairie-smlv.fr",
              gestion_service=True),
    Structure(_HOPITAL, "CENTRE HOSPITALIER DE VOIRON", "14 route des Gorges", "38500", "Voiron",
              "0476678000", "fournisseurs@ch-voiron.fr", gestion_engagement=True,
              statut_mise_en_paiement=True),
    Structure(_DEPARTEMENT, "DEPARTEMENT DE L'ISERE", "7 rue Fantin Latour", "38000", "Grenoble",
              "0476003838", "dematerialisation@isere.fr", gestion_service_engagement=True,
              recepteur_edi=True, moa=True),
    Structure(_LYCEE, "LYCEE CHAMPOLLION", "Cours La Fontaine", "38000", "Grenoble",
              "0476860000", "intendance@lycee-champollion.fr"),
    Structure(_SIVOM, "SIVOM DU CANTON DE VIF (DISSOUS)", "2 rue du Marche", "38450", "Vif",
              "0476720000", "sivom.vif@orange.fr", active=False),
)

DIRECTORY_SERVICES: tuple[Service, ...] = (
    Service(STATE_SIRET, "AIFE-DSI", "Direction des systèmes d'information"),
    Service(STATE_SIRET, "AIFE-ACHATS", "Cellule achats et marchés"),
    Service(STATE_SIRET, "AIFE-FORMATION", "Département formation"),
    Service(_COMMUNE, "SERV-TECH", "Services techniques"),
    Service(_COMMUNE, "ECOLES", "Affaires scolaires", egmt=True),
    Service(_COMMUNE, "CULTURE", "Culture et vie associative"),
    Service(_COMMUNE, "CCAS-ANCIEN", "Ancien CCAS (fermé)", active=False),
    Service(_DEPARTEMENT, "DGS", "Direction générale des services"),
    Service(_DEPARTEMENT, "DRH", "Ressources humaines"),
    Service(_DEPARTEMENT, "ROUTES", "Direction des mobilités et des routes"),
    Service(_HOPITAL, "PHARMACIE", "Pharmacie à usage intérieur"),
)

_BY_SIRET = {s.siret: s for s in DIRECTORY_STRUCTURES}
_ACTIVE_SERVICES: dict[str, list[Service]] = {}
for _svc in DIRECTORY_SERVICES:
    if _svc.active:
        _ACTIVE_SERVICES.setdefault(_svc.siret, []).append(_svc)
# who receives error-free invoices, and how often
_ROUTABLE = [s for s in DIRECTORY_STRUCTURES if s.active]
_ROUTABLE_WEIGHTS = [3, 3, 2, 2, 2]


def _bool(v: bool) -> str:
    return "true" if v else "false"


def write_directory(out_dir: Path) -> tuple[Path, Path]:
    """Write `structures.csv` (Chorus Pro export, 21 columns) and `services.csv`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    structures, services = out_dir / "structures.csv", out_dir / "services.csv"
    with structures.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=";", lineterminator="\n")
        w.writerow(STRUCTURE_COLUMNS)
        for s in DIRECTORY_STRUCTURES:
            w.writerow([
                "1", s.siret, s.name, _bool(s.emetteur_edi), _bool(s.recepteur_edi),
                _bool(s.statut_mise_en_paiement), _bool(s.gestion_engagement),
                _bool(s.gestion_service), _bool(s.gestion_service_engagement), _bool(s.moa),
                _bool(s.moa_only), _bool(s.active), s.address, "", "", s.postcode, s.city,
                s.phone, s.email, "FR", "FRANCE",
            ])
    with services.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=";", lineterminator="\n")
        w.writerow(SERVICE_COLUMNS)
        for v in DIRECTORY_SERVICES:
            w.writerow([v.siret, v.code, v.name, _bool(v.egmt), _bool(v.active)])
    return structures, services


# --------------------------------------------------------------------------- suppliers, products

_CITIES = (
    ("75011", "Paris"), ("69003", "Lyon"), ("13002", "Marseille"), ("31000", "Toulouse"),
    ("44000", "Nantes"), ("33000", "Bordeaux"), ("59000", "Lille"), ("67000", "Strasbourg"),
    ("35000", "Rennes"), ("21000", "Dijon"), ("38000", "Grenoble"), ("63000", "Clermont-Ferrand"),
)
_STREETS = (
    "rue de la République", "avenue Jean Jaurès", "boulevard Victor Hugo", "rue du Commerce",
    "allee des Tilleuls", "rue Pasteur", "chemin des Vignes", "rue de l'Industrie",
    "avenue du Général Leclerc", "impasse des Artisans", "quai des Chartrons", "rue Nationale",
)
_TRADES = (
    "Papeterie", "Imprimerie", "Nettoyage", "Informatique", "Restauration", "Transports",
    "Bâtiment", "Électricité", "Espaces verts", "Librairie", "Conseil", "Sécurité",
)
_SURNAMES = (
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux",
)
_FORMS = ("SARL", "SAS", "SA", "EURL", "SASU", "& Fils SARL")
_BANKS = (
    ("30004", "BNP Paribas"), ("30003", "Société Générale"), ("30002", "LCL"),
    ("10107", "BRED"), ("20041", "La Banque Postale"), ("30066", "CIC"),
    ("17515", "Caisse d'Épargne"), ("13306", "Crédit Agricole"),
)
# (reference, description, unit price range in cents, VAT rate)
_PRODUCTS = (
    ("PAP-A4-80", "Ramettes papier A4 80 g (carton de 5)", (1800, 3200), Decimal("20")),
    ("IMP-FLY", "Impression de dépliants quadrichromie (lot de 500)", (9000, 42000), Decimal("20")),
    ("NET-LOC", "Nettoyage des locaux (forfait mensuel)", (80000, 420000), Decimal("20")),
    ("INF-MAINT", "Maintenance du parc informatique (jour)", (45000, 95000), Decimal("20")),
    ("INF-PC", "Poste de travail portable 14 pouces", (65000, 140000), Decimal("20")),
    ("REST-REPAS", "Repas restauration collective", (450, 1100), Decimal("10")),
    ("TRANS-CAR", "Transport scolaire en autocar (trajet)", (18000, 65000), Decimal("10")),
    ("BAT-RENOV", "Travaux d'isolation thermique (m2)", (3500, 9000), Decimal("5.5")),
    ("LIB-MANUEL", "Manuels scolaires", (1500, 3500), Decimal("5.5")),
    ("LIB-ABO", "Abonnement presse quotidienne (mois)", (2500, 4500), Decimal("2.1")),
    ("ELEC-ECL", "Remplacement de luminaires LED <IP65>", (6000, 25000), Decimal("20")),
    ("EV-TONTE", "Entretien des espaces verts (passage)", (25000, 90000), Decimal("20")),
    ("SEC-GARD", "Gardiennage (heure)", (2200, 3400), Decimal("20")),
    ("CONS-AMO", "Assistance à maîtrise d'ouvrage (jour)", (70000, 120000), Decimal("20")),
)


@dataclass(frozen=True, slots=True)
class _Supplier:
    name: str
    siren: str
    siret: str
    vat: str
    street: str
    postcode: str
    city: str
    iban: str
    bank: str


def _suppliers(rng: random.Random, count: int) -> list[_Supplier]:
    out, seen = [], set()
    while len(out) < count:
        siren = _siren(str(rng.randint(3, 8)) + f"{rng.randrange(10**7):07d}")
        if siren in seen or siren.startswith("356000000"):
            continue
        seen.add(siren)
        siret = _siret(siren, f"{rng.randint(1, 99):04d}")
        postcode, city = rng.choice(_CITIES)
        bank, bank_name = rng.choice(_BANKS)
        iban = _iban_fr(bank, f"{rng.randrange(10**5):05d}", f"{rng.randrange(10**11):011d}")
        name = f"{rng.choice(_TRADES)} {rng.choice(_SURNAMES)} {rng.choice(_FORMS)}"
        street = f"{rng.randint(1, 180)} {rng.choice(_STREETS)}"
        out.append(_Supplier(name, siren, siret, _vat_fr(siren), street, postcode, city, iban, bank_name))
    return out


# --------------------------------------------------------------------------- invoice model


@dataclass(slots=True)
class _Line:
    ref: str
    description: str
    quantity: int
    price: Decimal
    net: Decimal
    rate: Decimal


@dataclass(slots=True)
class _Invoice:
    seq: int
    number: str
    issued: date
    due: date
    supplier: _Supplier
    supplier_siret: str
    iban: str
    recipient_siret: str
    recipient_name: str
    recipient_street: str
    recipient_postcode: str
    recipient_city: str
    code_service: str | None
    service_name: str | None
    ej: str | None
    lines: list[_Line]
    vat: list[tuple[Decimal, Decimal, Decimal]]  # (rate, base, amount)
    ht: Decimal
    tva: Decimal
    ttc: Decimal
    error: str | None = None
    xsd_variant: int = 0
    extra_pj: bool = False
    attachment: bytes = field(default=b"", repr=False)


def _rate_str(rate: Decimal) -> str:
    return f"{rate:.2f}"


def _ej(rng: random.Random, siret: str, year: int) -> str:
    if siret == STATE_SIRET:
        return "14" + f"{rng.randrange(10**8):08d}"
    return f"EJ{year}-{rng.randrange(10**6):06d}"


def _routing(rng: random.Random, s: Structure, year: int) -> tuple[str | None, str | None, str | None]:
    """(code service, service name, EJ) satisfying the structure's rules."""
    code = name = ej = None
    services = _ACTIVE_SERVICES.get(s.siret, [])
    need_ej = s.gestion_engagement
    if s.gestion_service:
        svc = rng.choice(services)
        code, name, need_ej = svc.code, svc.name, need_ej or svc.egmt
    elif s.gestion_service_engagement:
        choice = rng.randrange(3)  # 0 service only, 1 EJ only, 2 both
        if choice != 1:
            svc = rng.choice([v for v in services if not v.egmt])
            code, name = svc.code, svc.name
        need_ej = need_ej or choice != 0
    elif not s.gestion_engagement and rng.random() < 0.25:
        need_ej = True  # an EJ given though not required
    if need_ej:
        ej = _ej(rng, s.siret, year)
    return code, name, ej


def _lines(rng: random.Random) -> tuple[list[_Line], list[tuple[Decimal, Decimal, Decimal]], Decimal, Decimal]:
    lines = []
    for _ in range(rng.choices((1, 2, 3, 4, 5), (30, 30, 20, 12, 8))[0]):
        ref, desc, (lo, hi), rate = rng.choice(_PRODUCTS)
        qty = rng.randint(1, 24)
        price = Decimal(rng.randint(lo, hi)) / 100
        lines.append(_Line(ref, desc, qty, price, (price * qty).quantize(_CENT), rate))
    bases: dict[Decimal, Decimal] = {}
    for ln in lines:
        bases[ln.rate] = bases.get(ln.rate, Decimal(0)) + ln.net
    vat = [
        (rate, base, (base * rate / 100).quantize(_CENT, rounding=ROUND_HALF_UP))
        for rate, base in sorted(bases.items(), reverse=True)
    ]
    ht = sum((b for _, b, _ in vat), Decimal(0))
    tva = sum((a for _, _, a in vat), Decimal(0))
    return lines, vat, ht, tva


def _plan_errors(n: int, errors: float, kinds: Sequence[str], rng: random.Random) -> dict[int, str]:
    """Which invoice gets which error: exactly round(errors * n), kinds spread evenly."""
    k = round(errors * n)
    if k == 0:
        return {}
    chosen = rng.sample(range(n), k)  # random order: kinds assigned cyclically along it
    offset = rng.randrange(len(kinds))
    plan = {i: kinds[(offset + j) % len(kinds)] for j, i in enumerate(chosen)}
    # A duplicate needs an earlier invoice, clean when possible.
    first_clean = next((i for i in range(n) if i not in plan), None)
    if first_clean is not None:
        early = sorted(i for i, kind in plan.items() if kind == "duplicate" and i < first_clean)
        if early:
            del plan[early[0]]
            plan[first_clean] = "duplicate"
    elif plan.get(0) == "duplicate":
        others = [kd for kd in kinds if kd != "duplicate"]
        if not others:
            raise ValueError("l'erreur 'duplicate' exige une facture antérieure dans le flux")
        plan[0] = others[0]
    return plan


# --------------------------------------------------------------------------- attachments


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _pdf(lines: list[str]) -> bytes:
    """A minimal, well-formed one-page PDF (Helvetica text), with a correct xref table."""
    esc = [_ascii(s).replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for s in lines]
    content = ("BT /F1 11 Tf 56 790 Td 15 TL " + " ".join(f"({s}) '" for s in esc) + " ET").encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for num, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _invoice_pdf(inv: _Invoice) -> bytes:
    text = [
        f"FACTURE {inv.number}",
        f"Date d'emission : {inv.issued.isoformat()}    Echeance : {inv.due.isoformat()}",
        f"Fournisseur : {inv.supplier.name} - SIRET {inv.supplier_siret}",
        f"{inv.supplier.street}, {inv.supplier.postcode} {inv.supplier.city}",
        f"Destinataire : {inv.recipient_name} - SIRET {inv.recipient_siret}",
        f"Service : {inv.code_service or '-'}    Engagement : {inv.ej or '-'}",
        "",
    ]
    text += [f"{ln.quantity} x {ln.description} a {ln.price:.2f} EUR = {ln.net:.2f} EUR HT (TVA {ln.rate}%)"
             for ln in inv.lines]
    text += ["", f"Total HT {inv.ht:.2f} EUR   TVA {inv.tva:.2f} EUR   TTC {inv.ttc:.2f} EUR",
             f"Reglement par virement - IBAN {inv.iban}"]
    return _pdf(text)


def _delivery_csv(inv: _Invoice) -> bytes:
    rows = ["reference;designation;quantite"] + [f"{ln.ref};{ln.description};{ln.quantity}" for ln in inv.lines]
    return ("\n".join(rows) + "\n").encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------- renderers


def _x(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cpp(inv: _Invoice, attachments: bool) -> str:
    s = inv.supplier
    p = [f'<CPPFactureMixteUnitaire NumOrdre="{inv.seq}">\n']
    a = p.append
    a(f"<Fournisseur><TypeIdentifiant>1</TypeIdentifiant><Identifiant>{inv.supplier_siret}</Identifiant>"
      f"<RaisonSociale>{_x(s.name)}</RaisonSociale><CodePays>FR</CodePays>"
      f'<ReferenceBancaire Type="IBAN"><Compte>{inv.iban}</Compte><Etablissement>{_x(s.bank)}</Etablissement>'
      f"<RaisonSocialeEncaisseur>{_x(s.name)}</RaisonSocialeEncaisseur></ReferenceBancaire></Fournisseur>\n")
    a(f"<Debiteur><TypeIdentifiant>1</TypeIdentifiant><Identifiant>{inv.recipient_siret}</Identifiant>"
      f"<Nom>{_x(inv.recipient_name)}</Nom>")
    if inv.code_service:
        a(f"<CodeService>{_x(inv.code_service)}</CodeService>")
        if inv.service_name:
            a(f"<NomService>{_x(inv.service_name)}</NomService>")
    a("</Debiteur>\n<DonneesFacture>")
    bad = inv.error == "xsd"
    a(f"<Id>{inv.number}</Id><Type>{'385' if bad and inv.xsd_variant else '380'}</Type><Cadre>A1</Cadre>")
    if not (bad and not inv.xsd_variant):
        a(f"<DateEmissionFacture>{inv.issued.isoformat()}</DateEmissionFacture>")
    a("<ModePaiement><Code>30</Code></ModePaiement><Devise>EUR</Devise>")
    a(f"<Montants><MontantHT>{inv.ht:.2f}</MontantHT><MontantTTC>{inv.ttc:.2f}</MontantTTC>"
      f"<MontantNetAPayer>{inv.ttc:.2f}</MontantNetAPayer></Montants>\n<TVAS>")
    for rate, base, amount in inv.vat:
        a(f"<TVA><Taux>{_rate_str(rate)}</Taux><BaseHt>{base:.2f}</BaseHt><MontantTVA>{amount:.2f}</MontantTVA></TVA>")
    a("</TVAS>")
    if inv.ej:
        a(f"<Engagement><NumeroEngagement>{inv.ej}</NumeroEngagement></Engagement>")
    a("\n<Lignes>")
    for n, ln in enumerate(inv.lines, 1):
        a(f'<Ligne NumOrdre="{n}"><ReferenceProduit>{ln.ref}</ReferenceProduit>'
          f"<Description>{_x(ln.description)}</Description><PrixUnitaire>{ln.price:.2f}</PrixUnitaire>"
          f"<Quantite>{ln.quantity}</Quantite><MontantHT>{ln.net:.2f}</MontantHT>"
          f"<TauxTVA>{_rate_str(ln.rate)}</TauxTVA></Ligne>")
    a("</Lignes></DonneesFacture>\n")
    if attachments:
        a(f'<PJ NumOrdre="1"><Contenu>{_b64(inv.attachment)}</Contenu><NomPJ>{inv.number}.pdf</NomPJ>'
          "<TypePJ>01</TypePJ><MimeTypePJ>application/pdf</MimeTypePJ></PJ>\n")
        if inv.extra_pj:
            a(f'<PJ NumOrdre="2"><Contenu>{_b64(_delivery_csv(inv))}</Contenu><NomPJ>BL_{inv.number}.csv</NomPJ>'
              "<TypePJ>02</TypePJ><MimeTypePJ>text/csv</MimeTypePJ></PJ>\n")
    else:  # the schema wants one PJ: a plain-text copy, the smallest honest payload
        text = f"Facture {inv.number} - {inv.supplier.name} - TTC {inv.ttc:.2f} EUR\n"
        a(f'<PJ NumOrdre="1"><Contenu>{_b64(text.encode("utf-8"))}</Contenu><NomPJ>{inv.number}.txt</NomPJ>'
          "<TypePJ>01</TypePJ><MimeTypePJ>text/plain</MimeTypePJ></PJ>\n")
    a("</CPPFactureMixteUnitaire>\n")
    return "".join(p)


_UBL_NS = (
    'xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" '
    'xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2" '
    'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"'
)


def _ubl(inv: _Invoice, attachments: bool) -> str:
    s = inv.supplier
    p = [f'<?xml version="1.0" encoding="UTF-8"?>\n<Invoice {_UBL_NS}>\n']
    a = p.append
    a("<cbc:CustomizationID>urn:cen.eu:en16931:2017</cbc:CustomizationID>\n<cbc:ProfileID>A1</cbc:ProfileID>\n")
    a(f"<cbc:ID>{inv.number}</cbc:ID>\n")
    if inv.error == "xsd":
        if inv.xsd_variant:
            a(f"<cbc:IssueDate>{inv.issued.strftime('%d/%m/%Y')}</cbc:IssueDate>\n")  # not an xs:date
    else:
        a(f"<cbc:IssueDate>{inv.issued.isoformat()}</cbc:IssueDate>\n")
    a(f"<cbc:DueDate>{inv.due.isoformat()}</cbc:DueDate>\n<cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode>\n"
      "<cbc:DocumentCurrencyCode>EUR</cbc:DocumentCurrencyCode>\n")
    if inv.code_service:
        a(f"<cbc:BuyerReference>{_x(inv.code_service)}</cbc:BuyerReference>\n")
    if inv.ej:
        a(f"<cac:OrderReference><cbc:ID>{inv.ej}</cbc:ID></cac:OrderReference>\n")
    if attachments:
        a(f"<cac:AdditionalDocumentReference><cbc:ID>{inv.number}-PDF</cbc:ID>"
          "<cbc:DocumentDescription>Facture au format PDF</cbc:DocumentDescription><cac:Attachment>"
          f'<cbc:EmbeddedDocumentBinaryObject mimeCode="application/pdf" filename="{inv.number}.pdf">'
          f"{_b64(inv.attachment)}</cbc:EmbeddedDocumentBinaryObject></cac:Attachment>"
          "</cac:AdditionalDocumentReference>\n")
    a("<cac:AccountingSupplierParty><cac:Party>"
      f'<cac:PartyIdentification><cbc:ID schemeID="0009">{inv.supplier_siret}</cbc:ID></cac:PartyIdentification>'
      f"<cac:PartyName><cbc:Name>{_x(s.name)}</cbc:Name></cac:PartyName>"
      f"<cac:PostalAddress><cbc:StreetName>{_x(s.street)}</cbc:StreetName><cbc:CityName>{_x(s.city)}</cbc:CityName>"
      f"<cbc:PostalZone>{s.postcode}</cbc:PostalZone>"
      "<cac:Country><cbc:IdentificationCode>FR</cbc:IdentificationCode></cac:Country></cac:PostalAddress>"
      f"<cac:PartyTaxScheme><cbc:CompanyID>{s.vat}</cbc:CompanyID><cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>"
      "</cac:PartyTaxScheme>"
      f"<cac:PartyLegalEntity><cbc:RegistrationName>{_x(s.name)}</cbc:RegistrationName>"
      f'<cbc:CompanyID schemeID="0009">{inv.supplier_siret}</cbc:CompanyID></cac:PartyLegalEntity>'
      "</cac:Party></cac:AccountingSupplierParty>\n")
    a("<cac:AccountingCustomerParty><cac:Party>"
      f'<cac:PartyIdentification><cbc:ID schemeID="0009">{inv.recipient_siret}</cbc:ID></cac:PartyIdentification>'
      f"<cac:PartyName><cbc:Name>{_x(inv.recipient_name)}</cbc:Name></cac:PartyName>"
      f"<cac:PostalAddress><cbc:StreetName>{_x(inv.recipient_street)}</cbc:StreetName>"
      f"<cbc:CityName>{_x(inv.recipient_city)}</cbc:CityName><cbc:PostalZone>{inv.recipient_postcode}</cbc:PostalZone>"
      "<cac:Country><cbc:IdentificationCode>FR</cbc:IdentificationCode></cac:Country></cac:PostalAddress>"
      f"<cac:PartyLegalEntity><cbc:RegistrationName>{_x(inv.recipient_name)}</cbc:RegistrationName>"
      "</cac:PartyLegalEntity></cac:Party></cac:AccountingCustomerParty>\n")
    a(f"<cac:Delivery><cbc:ActualDeliveryDate>{inv.issued.isoformat()}</cbc:ActualDeliveryDate></cac:Delivery>\n")
    a(f"<cac:PaymentMeans><cbc:PaymentMeansCode>30</cbc:PaymentMeansCode><cbc:PaymentID>{inv.number}</cbc:PaymentID>"
      f"<cac:PayeeFinancialAccount><cbc:ID>{inv.iban}</cbc:ID><cbc:Name>{_x(s.name)}</cbc:Name>"
      "</cac:PayeeFinancialAccount></cac:PaymentMeans>\n"
      "<cac:PaymentTerms><cbc:Note>Paiement a 30 jours par virement</cbc:Note></cac:PaymentTerms>\n")
    a(f'<cac:TaxTotal><cbc:TaxAmount currencyID="EUR">{inv.tva:.2f}</cbc:TaxAmount>')
    for rate, base, amount in inv.vat:
        a(f'<cac:TaxSubtotal><cbc:TaxableAmount currencyID="EUR">{base:.2f}</cbc:TaxableAmount>'
          f'<cbc:TaxAmount currencyID="EUR">{amount:.2f}</cbc:TaxAmount><cac:TaxCategory><cbc:ID>S</cbc:ID>'
          f"<cbc:Percent>{_rate_str(rate)}</cbc:Percent><cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>"
          "</cac:TaxCategory></cac:TaxSubtotal>")
    a("</cac:TaxTotal>\n")
    a(f'<cac:LegalMonetaryTotal><cbc:LineExtensionAmount currencyID="EUR">{inv.ht:.2f}</cbc:LineExtensionAmount>'
      f'<cbc:TaxExclusiveAmount currencyID="EUR">{inv.ht:.2f}</cbc:TaxExclusiveAmount>'
      f'<cbc:TaxInclusiveAmount currencyID="EUR">{inv.ttc:.2f}</cbc:TaxInclusiveAmount>'
      f'<cbc:PayableAmount currencyID="EUR">{inv.ttc:.2f}</cbc:PayableAmount></cac:LegalMonetaryTotal>\n')
    for n, ln in enumerate(inv.lines, 1):
        a(f"<cac:InvoiceLine><cbc:ID>{n}</cbc:ID>"
          f'<cbc:InvoicedQuantity unitCode="C62">{ln.quantity}</cbc:InvoicedQuantity>'
          f'<cbc:LineExtensionAmount currencyID="EUR">{ln.net:.2f}</cbc:LineExtensionAmount>'
          f"<cac:Item><cbc:Name>{_x(ln.description)}</cbc:Name>"
          f"<cac:SellersItemIdentification><cbc:ID>{ln.ref}</cbc:ID></cac:SellersItemIdentification>"
          f"<cac:ClassifiedTaxCategory><cbc:ID>S</cbc:ID><cbc:Percent>{_rate_str(ln.rate)}</cbc:Percent>"
          "<cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme></cac:ClassifiedTaxCategory></cac:Item>"
          f'<cac:Price><cbc:PriceAmount currencyID="EUR">{ln.price:.2f}</cbc:PriceAmount></cac:Price>'
          "</cac:InvoiceLine>\n")
    a("</Invoice>\n")
    return "".join(p)


_CII_NS = (
    'xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100" '
    'xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100" '
    'xmlns:qdt="urn:un:unece:uncefact:data:standard:QualifiedDataType:100" '
    'xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"'
)


def _cii_date(d: date) -> str:
    return f'<udt:DateTimeString format="102">{d.strftime("%Y%m%d")}</udt:DateTimeString>'


def _cii(inv: _Invoice, attachments: bool) -> str:
    s = inv.supplier
    p = [f'<?xml version="1.0" encoding="UTF-8"?>\n<rsm:CrossIndustryInvoice {_CII_NS}>\n']
    a = p.append
    a("<rsm:ExchangedDocumentContext>"
      "<ram:BusinessProcessSpecifiedDocumentContextParameter><ram:ID>A1</ram:ID>"
      "</ram:BusinessProcessSpecifiedDocumentContextParameter>"
      "<ram:GuidelineSpecifiedDocumentContextParameter><ram:ID>urn:cen.eu:en16931:2017</ram:ID>"
      "</ram:GuidelineSpecifiedDocumentContextParameter></rsm:ExchangedDocumentContext>\n")
    a(f"<rsm:ExchangedDocument><ram:ID>{inv.number}</ram:ID>")
    # the xsd error drops one mandatory element: TypeCode (variant 0) or IssueDateTime (1)
    if not (inv.error == "xsd" and inv.xsd_variant == 0):
        a("<ram:TypeCode>380</ram:TypeCode>")
    if not (inv.error == "xsd" and inv.xsd_variant == 1):
        a(f"<ram:IssueDateTime>{_cii_date(inv.issued)}</ram:IssueDateTime>")
    a("</rsm:ExchangedDocument>\n")
    a("<rsm:SupplyChainTradeTransaction>\n")
    for n, ln in enumerate(inv.lines, 1):
        a(f"<ram:IncludedSupplyChainTradeLineItem><ram:AssociatedDocumentLineDocument><ram:LineID>{n}</ram:LineID>"
          f"</ram:AssociatedDocumentLineDocument><ram:SpecifiedTradeProduct><ram:SellerAssignedID>{ln.ref}"
          f"</ram:SellerAssignedID><ram:Name>{_x(ln.description)}</ram:Name></ram:SpecifiedTradeProduct>"
          "<ram:SpecifiedLineTradeAgreement><ram:NetPriceProductTradePrice>"
          f"<ram:ChargeAmount>{ln.price:.2f}</ram:ChargeAmount></ram:NetPriceProductTradePrice>"
          "</ram:SpecifiedLineTradeAgreement><ram:SpecifiedLineTradeDelivery>"
          f'<ram:BilledQuantity unitCode="C62">{ln.quantity}</ram:BilledQuantity></ram:SpecifiedLineTradeDelivery>'
          "<ram:SpecifiedLineTradeSettlement><ram:ApplicableTradeTax><ram:TypeCode>VAT</ram:TypeCode>"
          f"<ram:CategoryCode>S</ram:CategoryCode><ram:RateApplicablePercent>{_rate_str(ln.rate)}"
          "</ram:RateApplicablePercent></ram:ApplicableTradeTax>"
          "<ram:SpecifiedTradeSettlementLineMonetarySummation>"
          f"<ram:LineTotalAmount>{ln.net:.2f}</ram:LineTotalAmount>"
          "</ram:SpecifiedTradeSettlementLineMonetarySummation></ram:SpecifiedLineTradeSettlement>"
          "</ram:IncludedSupplyChainTradeLineItem>\n")
    a("<ram:ApplicableHeaderTradeAgreement>")
    if inv.code_service:
        a(f"<ram:BuyerReference>{_x(inv.code_service)}</ram:BuyerReference>")
    a(f'<ram:SellerTradeParty><ram:GlobalID schemeID="0009">{inv.supplier_siret}</ram:GlobalID>'
      f"<ram:Name>{_x(s.name)}</ram:Name>"
      f'<ram:SpecifiedLegalOrganization><ram:ID schemeID="0002">{s.siren}</ram:ID></ram:SpecifiedLegalOrganization>'
      f"<ram:PostalTradeAddress><ram:PostcodeCode>{s.postcode}</ram:PostcodeCode><ram:LineOne>{_x(s.street)}"
      f"</ram:LineOne><ram:CityName>{_x(s.city)}</ram:CityName><ram:CountryID>FR</ram:CountryID>"
      "</ram:PostalTradeAddress>"
      f'<ram:SpecifiedTaxRegistration><ram:ID schemeID="VA">{s.vat}</ram:ID></ram:SpecifiedTaxRegistration>'
      "</ram:SellerTradeParty>\n")
    a(f'<ram:BuyerTradeParty><ram:GlobalID schemeID="0009">{inv.recipient_siret}</ram:GlobalID>'
      f"<ram:Name>{_x(inv.recipient_name)}</ram:Name>"
      f"<ram:PostalTradeAddress><ram:PostcodeCode>{inv.recipient_postcode}</ram:PostcodeCode>"
      f"<ram:LineOne>{_x(inv.recipient_street)}</ram:LineOne><ram:CityName>{_x(inv.recipient_city)}</ram:CityName>"
      "<ram:CountryID>FR</ram:CountryID></ram:PostalTradeAddress></ram:BuyerTradeParty>\n")
    if inv.ej:
        a(f"<ram:BuyerOrderReferencedDocument><ram:IssuerAssignedID>{inv.ej}</ram:IssuerAssignedID>"
          "</ram:BuyerOrderReferencedDocument>")
    if attachments:
        a(f"<ram:AdditionalReferencedDocument><ram:IssuerAssignedID>{inv.number}-PDF</ram:IssuerAssignedID>"
          "<ram:TypeCode>916</ram:TypeCode><ram:Name>Facture au format PDF</ram:Name>"
          f'<ram:AttachmentBinaryObject mimeCode="application/pdf" filename="{inv.number}.pdf">'
          f"{_b64(inv.attachment)}</ram:AttachmentBinaryObject></ram:AdditionalReferencedDocument>")
    a("</ram:ApplicableHeaderTradeAgreement>\n<ram:ApplicableHeaderTradeDelivery><ram:ActualDeliverySupplyChainEvent>"
      f"<ram:OccurrenceDateTime>{_cii_date(inv.issued)}</ram:OccurrenceDateTime></ram:ActualDeliverySupplyChainEvent>"
      "</ram:ApplicableHeaderTradeDelivery>\n")
    a(f"<ram:ApplicableHeaderTradeSettlement><ram:PaymentReference>{inv.number}</ram:PaymentReference>"
      "<ram:InvoiceCurrencyCode>EUR</ram:InvoiceCurrencyCode>"
      "<ram:SpecifiedTradeSettlementPaymentMeans><ram:TypeCode>30</ram:TypeCode>"
      f"<ram:PayeePartyCreditorFinancialAccount><ram:IBANID>{inv.iban}</ram:IBANID>"
      "</ram:PayeePartyCreditorFinancialAccount></ram:SpecifiedTradeSettlementPaymentMeans>\n")
    for rate, base, amount in inv.vat:
        a(f"<ram:ApplicableTradeTax><ram:CalculatedAmount>{amount:.2f}</ram:CalculatedAmount>"
          f"<ram:TypeCode>VAT</ram:TypeCode><ram:BasisAmount>{base:.2f}</ram:BasisAmount>"
          f"<ram:CategoryCode>S</ram:CategoryCode><ram:RateApplicablePercent>{_rate_str(rate)}"
          "</ram:RateApplicablePercent></ram:ApplicableTradeTax>\n")
    a("<ram:SpecifiedTradePaymentTerms><ram:Description>Paiement a 30 jours par virement</ram:Description>"
      f"<ram:DueDateDateTime>{_cii_date(inv.due)}</ram:DueDateDateTime></ram:SpecifiedTradePaymentTerms>\n")
    a("<ram:SpecifiedTradeSettlementHeaderMonetarySummation>"
      f"<ram:LineTotalAmount>{inv.ht:.2f}</ram:LineTotalAmount>"
      f"<ram:TaxBasisTotalAmount>{inv.ht:.2f}</ram:TaxBasisTotalAmount>"
      f'<ram:TaxTotalAmount currencyID="EUR">{inv.tva:.2f}</ram:TaxTotalAmount>'
      f"<ram:GrandTotalAmount>{inv.ttc:.2f}</ram:GrandTotalAmount>"
      f"<ram:DuePayableAmount>{inv.ttc:.2f}</ram:DuePayableAmount>"
      "</ram:SpecifiedTradeSettlementHeaderMonetarySummation></ram:ApplicableHeaderTradeSettlement>\n")
    a("</rsm:SupplyChainTradeTransaction>\n</rsm:CrossIndustryInvoice>\n")
    return "".join(p)


_RENDER = {"cpp": _cpp, "ubl": _ubl, "cii": _cii}


# --------------------------------------------------------------------------- building invoices


class _Factory:
    """Makes the invoices of one flow, one at a time, from seeded random streams."""

    def __init__(self, seed: int, flow_id: str, reference: date, plan: dict[int, str], attachments: bool):
        self.rng = random.Random(f"edi-gen:{seed}:data")
        self.suppliers = _suppliers(random.Random(f"edi-gen:{seed}:suppliers"), 16)
        self.tag = _tag(flow_id)
        self.reference = reference
        self.plan = plan
        self.attachments = attachments
        self.last_clean: _Invoice | None = None
        self.previous: _Invoice | None = None

    def make(self, index: int) -> _Invoice:
        rng = self.rng
        kind = self.plan.get(index)
        issued = self.reference - timedelta(days=rng.randint(0, 60))
        supplier = rng.choice(self.suppliers)
        number = f"F{self.tag}-{index + 1:06d}"
        if kind == "duplicate":
            original = self.last_clean or self.previous
            number, supplier, issued = original.number, original.supplier, original.issued
        if kind == "recipient":
            structure = None
        elif kind == "service":
            structure = rng.choice([s for s in _ROUTABLE if s.gestion_service])
        elif kind == "ej":
            structure = rng.choice([s for s in _ROUTABLE if s.gestion_engagement])
        else:
            structure = rng.choices(_ROUTABLE, _ROUTABLE_WEIGHTS)[0]
        if structure is None:
            siret = _siret(_siren("21" + f"{rng.randrange(10**6):06d}"), f"{rng.randint(1, 99):04d}")
            while siret in _BY_SIRET:
                siret = _siret(_siren("21" + f"{rng.randrange(10**6):06d}"), "0010")
            postcode, city = rng.choice(_CITIES)
            rname, rstreet = f"COMMUNE DE {city.upper()}", "Hotel de Ville"
            code = sname = None
            ej = _ej(rng, siret, issued.year) if rng.random() < 0.3 else None
        else:
            siret, rname, rstreet = structure.siret, structure.name, structure.address
            postcode, city = structure.postcode, structure.city
            code, sname, ej = _routing(rng, structure, issued.year)
            if kind == "service":
                if rng.random() < 0.5:
                    code = sname = None
                else:
                    code, sname = f"SERV-INCONNU-{rng.randrange(1000):03d}", None
                if structure.gestion_engagement and ej is None:
                    ej = _ej(rng, siret, issued.year)
            elif kind == "ej":
                ej = None
        lines, vat, ht, tva = _lines(rng)
        ttc = ht + tva + (Decimal("1.00") if kind == "amount" else 0)
        inv = _Invoice(
            seq=index + 1, number=number, issued=issued, due=issued + timedelta(days=30),
            supplier=supplier,
            supplier_siret=_break_siret(supplier.siret) if kind == "siret" else supplier.siret,
            iban=_break_iban(supplier.iban) if kind == "iban" else supplier.iban,
            recipient_siret=siret, recipient_name=rname, recipient_street=rstreet,
            recipient_postcode=postcode, recipient_city=city, code_service=code, service_name=sname,
            ej=ej, lines=lines, vat=vat, ht=ht, tva=tva, ttc=ttc, error=kind,
            xsd_variant=rng.randrange(2), extra_pj=rng.random() < 0.2,
        )
        if self.attachments:
            inv.attachment = _invoice_pdf(inv)
        if kind is None:
            self.last_clean = inv
        self.previous = inv
        return inv


def _tag(flow_id: str) -> str:
    """Six [A-Z0-9] characters from the flow id, so numbers differ between flows."""
    n = int.from_bytes(hashlib.sha256(flow_id.encode()).digest()[:8], "big")
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for _ in range(6):
        n, r = divmod(n, 36)
        out.append(alphabet[r])
    return "".join(out)


def flow_id_for(interface: str, partner: str, seed: int) -> str:
    """25 chars: sender code on 6 (padded with 0), the interface's 4 digits, 15 seeded digits.

    This is AIFE's recommended shape (reference §1.4)."""
    digits = int(hashlib.sha256(f"{interface}:{partner}:{seed}".encode()).hexdigest(), 16) % 10**15
    return f"{partner[:6]:0<6}{interface[3:7]}{digits:015d}"


# --------------------------------------------------------------------------- writing


def _record(inv: _Invoice, member: str | None) -> GeneratedInvoice:
    return GeneratedInvoice(inv.number, inv.recipient_siret, inv.code_service, inv.ej, inv.error,
                            inv.supplier_siret, member)


def _write_cpp(tmp: Path, factory: _Factory, n: int, partner: str, flow_id: str,
               attachments: bool, out: list[GeneratedInvoice]) -> None:
    produced = factory.reference.isoformat()
    with tmp.open("w", encoding="utf-8", newline="\n", buffering=1 << 20) as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<CPPFactureMixte Version="V1_17">\n'
                '<Enveloppe><EnveloppeUnitaire NumOrdre="1"><Parametres>'
                f'<ParametreIndiv NumOrdre="0001"><Code>DtPrd</Code><Valeurparametre>{produced}</Valeurparametre>'
                '</ParametreIndiv><ParametreIndiv NumOrdre="0002"><Code>IdFlx</Code>'
                f"<Valeurparametre>{flow_id}</Valeurparametre></ParametreIndiv></Parametres>"
                "<Partenaires><Recepteur><Id>CPP</Id><Libelle>Chorus Pro</Libelle></Recepteur>"
                f"<Emetteur><Id>{partner}</Id></Emetteur></Partenaires></EnveloppeUnitaire></Enveloppe>\n"
                f'<CPPFactures Compteur="{n}">\n')
        for i in range(n):
            inv = factory.make(i)
            f.write(_cpp(inv, attachments))
            out.append(_record(inv, None))
        f.write("</CPPFactures>\n</CPPFactureMixte>\n")


def _write_single(tmp: Path, factory: _Factory, syntax: str, attachments: bool,
                  out: list[GeneratedInvoice]) -> None:
    inv = factory.make(0)
    tmp.write_bytes(_RENDER[syntax](inv, attachments).encode("utf-8"))
    out.append(_record(inv, None))


def _write_tar(tmp: Path, factory: _Factory, syntax: str, n: int, attachments: bool,
               mtime: int, out: list[GeneratedInvoice]) -> None:
    render = _RENDER[syntax]
    with tmp.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=mtime,
                                              compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(n):
            inv = factory.make(i)
            data = render(inv, attachments).encode("utf-8")
            member = f"{i + 1:06d}_{inv.number}.xml"
            info = tarfile.TarInfo(member)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
            out.append(_record(inv, member))


def generate(
    interface: str,
    invoices: int,
    out_dir: Path,
    *,
    errors: float = 0.0,
    seed: int = 0,
    partner: str = "DEMO",
    kinds: Sequence[str] | None = None,
    attachments: bool = True,
    flow_id: str | None = None,
    reference_date: date | None = None,
) -> GeneratedFlow:
    """Write one flow of `invoices` invoices into `out_dir`, plus the directory CSV files.

    `reference_date` (default: today) is the flow's production date; invoices are dated in
    the 60 days before it. Output is byte-for-byte deterministic for the same arguments.
    The flow file appears atomically (written under a dot-name, then renamed), so a spool
    watcher never sees it half written.
    """
    if interface not in INTERFACES:
        raise ValueError(f"interface inconnue : {interface!r} (attendu : {', '.join(INTERFACES)})")
    if invoices < 1:
        raise ValueError("il faut au moins une facture")
    if not 0.0 <= errors <= 1.0:
        raise ValueError("le taux d'erreurs doit être compris entre 0 et 1")
    if not _APP_RE.match(partner):
        raise ValueError(f"code application invalide : {partner!r} (3 à 8 caractères A-Z 0-9)")
    kinds = tuple(kinds) if kinds else DEFAULT_KINDS
    unknown = [k for k in kinds if k not in ERROR_KINDS]
    if unknown:
        raise ValueError(f"type d'erreur inconnu : {', '.join(unknown)} (attendu : {', '.join(ERROR_KINDS)})")
    flow_id = flow_id or flow_id_for(interface, partner, seed)
    if not _FLOW_ID_RE.match(flow_id):
        raise ValueError(f"identifiant de flux invalide : {flow_id!r} (25 caractères A-Z 0-9)")

    out_dir = Path(out_dir)
    structures_csv, services_csv = write_directory(out_dir)
    reference = reference_date or date.today()
    plan = _plan_errors(invoices, errors, kinds, random.Random(f"edi-gen:{seed}:errors"))
    factory = _Factory(seed, flow_id, reference, plan, attachments)
    syntax = INTERFACES[interface]
    ext = "tar.gz" if syntax != "cpp" and invoices > 1 else "xml"
    path = out_dir / f"{interface}_{partner}_{flow_id}.{ext}"
    tmp = out_dir / f".{path.name}.part"
    records: list[GeneratedInvoice] = []
    try:
        if syntax == "cpp":
            _write_cpp(tmp, factory, invoices, partner, flow_id, attachments, records)
        elif invoices == 1:
            _write_single(tmp, factory, syntax, attachments, records)
        else:
            mtime = calendar.timegm(reference.timetuple())
            _write_tar(tmp, factory, syntax, invoices, attachments, mtime, records)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return GeneratedFlow(path, flow_id, interface, records, structures_csv, services_csv, partner)


def differential_corpus(invoices: int, seed: int = 1, errors: float = 0.5) -> Iterator[tuple[str, bytes]]:
    """Generated UBL and CII invoices (every error kind) and credit notes made from them: the
    corpus on which the native engine is compared with Saxon (tests, benchmark)."""
    import tempfile

    from edi.validate.native.differential import credit_note, documents_in

    kinds = tuple(k for k in ERROR_KINDS if k != "duplicate")
    with tempfile.TemporaryDirectory(prefix="edi-diff-") as tmp:
        for interface in ("FSO1100A", "FSO1106A"):
            flow = generate(interface, invoices, Path(tmp) / interface, errors=errors, seed=seed, kinds=kinds)
            for name, raw in documents_in([flow.path]):
                yield name, raw
                if interface == "FSO1100A":
                    yield name + ":avoir", credit_note(raw)
                elif b">380</ram:TypeCode>" in raw:
                    yield name + ":avoir", raw.replace(b">380</ram:TypeCode>", b">381</ram:TypeCode>", 1)
