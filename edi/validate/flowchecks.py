"""Flow-level checks (design: "Checks and their codes", flow level): every one of them, here.

A failed check makes the whole flow irrecevable: no invoice of it is integrated, and the
integration report (status 93) names the code. Each check is a small function that decides and
raises `FlowRejected` with its code and French detail. Three kinds:

- before any byte is parsed: name, sender, FLOWID reservation, size (`edi.pipeline`);
- while the splitter streams the flow (`edi.ingest.split`), which calls the checks below at the
  point it meets the problem: prolog, document root, XInclude, archive entries and sizes,
  element counts, the CPP envelope and structure, the declared count;
- parse and extraction errors, turned into their code by `syntax_error` / `unreadable_archive`.

The limits these checks enforce come from `[limits]` (`Limits.of`, the one place they are read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lxml import etree

from edi.config import LimitsSettings
from edi.finding import Finding
from edi.interfaces import (
    CPP_ENVELOPE, CPP_FLOW, CPP_INVOICE, CPP_INVOICES, CPP_STATUS, CPP_STATUS_LINE, CPP_STATUS_LINES, EXTENSIONS,
    INTERFACES,
)
from edi.validate import xsd

if TYPE_CHECKING:
    from edi.db.models import Flow

# code -> French message (one line, as the operator reads it in the report)
MESSAGES = {
    "IRR_NOM_F": "Nom de fichier non conforme : attendu <INTERFACE>_<APP>_<IDFLUX 25 car.>.<xml|tar.gz>",
    "IRR_CODE_INTER": "Code interface inconnu",
    "IRR_CODE_APP": "Code application inconnu, désactivé, ou non autorisé pour cette interface",
    "IRR_UNCITE": "Identifiant de flux déjà reçu de cet émetteur",
    "IRR_VIDE": "Flux vide",
    "IRR_TAILLE": "Taille du flux supérieure à la limite autorisée",
    "IRR_TYPE": "Extension ou nature du fichier non conforme à l'interface",
    "IRR_EXTRAC": "Archive illisible : extraction impossible",
    "IRR_SYNTAX": "Fichier XML mal formé ou enveloppe invalide",
}

_STEM = re.compile(r"^(?P<interface>[A-Z0-9]{8})_(?P<app>[A-Z0-9]{3,8})_(?P<flow_ref>[A-Z0-9]{25})$")

#: Bytes of PAX / GNU long-name headers in front of one archive member. A real one holds a long
#: path and a few times (a few hundred bytes); tarfile reads it whole into memory before we see it.
MAX_TAR_HEADER_BYTES = 65536
#: Directory entries tolerated in one archive (they hold nothing; tools add a few).
MAX_TAR_DIRECTORIES = 1000


class FlowRejected(Exception):
    """The flow is irrecevable. Carries the finding for the report."""

    def __init__(self, code: str, detail: str = "", *, location: str = "", value: str = ""):
        message = MESSAGES[code] + (f" : {detail}" if detail else "")
        super().__init__(message)
        self.finding = Finding(code=code, reason=code, message=message, location=location, value=value)


@dataclass(frozen=True)
class Limits:
    """What a flow may hold; read from `[limits]` once per flow by `of`."""

    max_flow_bytes: int
    max_file_bytes: int
    # defaults: the declared ones (tests and callers without a configuration build Limits directly)
    max_archive_members: int = LimitsSettings.model_fields["max_archive_members"].default
    max_invoice_elements: int = LimitsSettings.model_fields["max_invoice_elements"].default

    @classmethod
    def of(cls, cfg) -> Limits:
        limits = cfg.limits
        return cls(max_flow_bytes=limits.max_flow_bytes, max_file_bytes=limits.max_file_bytes,
                   max_archive_members=limits.max_archive_members,
                   max_invoice_elements=limits.max_invoice_elements)


# ------------------------------------------------------------------ before parsing


@dataclass(frozen=True)
class FlowName:
    interface: str
    app: str
    flow_ref: str
    extension: str  # "xml" | "tar.gz"


def split_extension(filename: str) -> tuple[str, str]:
    lower = filename.lower()
    for ext in EXTENSIONS:
        if lower.endswith("." + ext):
            return filename[: -len(ext) - 1], ext
    stem, dot, ext = filename.rpartition(".")
    return (stem, ext) if dot else (filename, "")


def parse_name(filename: str) -> FlowName:
    """Parse `<INTERFACE>_<APP>_<FLOWID>.<xml|tar.gz>`; raise FlowRejected when it is not.

    >>> parse_name("FSO1110A_DEMO_DEMO011100000000000000001.xml").app
    'DEMO'
    """
    stem, ext = split_extension(filename)
    match = _STEM.match(stem)
    if not match:
        raise FlowRejected("IRR_NOM_F", location="nom du fichier", value=filename)
    if ext not in EXTENSIONS or not filename.endswith(tuple("." + e for e in EXTENSIONS)):
        raise FlowRejected("IRR_TYPE", "extension attendue .xml ou .tar.gz", location="nom du fichier", value=filename)
    name = FlowName(extension=ext, **match.groupdict())
    interface = INTERFACES.get(name.interface)
    if interface is None:
        raise FlowRejected("IRR_CODE_INTER", location="nom du fichier", value=name.interface)
    if ext not in interface.extensions:
        allowed = " ou ".join("." + e for e in interface.extensions)
        raise FlowRejected("IRR_TYPE", f"un flux {name.interface} est un fichier {allowed}",
                           location="nom du fichier", value=filename)
    return name


def check_sender(name: FlowName, folder_app: str | None, partner) -> None:
    """The sender must be the account that dropped the flow, known, enabled, and subscribed."""
    if folder_app and name.app != folder_app:
        raise FlowRejected("IRR_CODE_APP", f"flux déposé par {folder_app}", location="nom du fichier", value=name.app)
    if partner is None or not partner.enabled:
        raise FlowRejected("IRR_CODE_APP", location="nom du fichier", value=name.app)
    role = INTERFACES[name.interface].role
    if (partner.role or "sender") != role:
        who = "aux destinataires" if role == "recipient" else "aux opérateurs déposants"
        raise FlowRejected("IRR_CODE_APP", f"interface {name.interface} réservée {who}", value=name.interface)
    allowed = [c for c in (partner.interfaces or "").split(",") if c]
    if allowed and name.interface not in allowed:
        raise FlowRejected("IRR_CODE_APP", f"interface {name.interface} non souscrite", value=name.interface)


def reserve_flow_id(url: str, flow: Flow, name: FlowName) -> None:
    """Claim APP/FLOWID for this flow (a unique key: a second flow with it is IRR_UNCITE), and
    record its FLOWID at once so that ops can find it by that id even if it fails later."""
    from sqlalchemy import update  # here: validation workers import this module, not the database
    from sqlalchemy.exc import IntegrityError

    from edi import db
    from edi.db.models import Flow

    key = f"{name.app}/{name.flow_ref}"
    if flow.flow_key == key:
        return
    try:
        with db.session(url) as s:
            s.execute(update(Flow).where(Flow.id == flow.id).values(flow_key=key, flow_ref=name.flow_ref))
            s.commit()
    except IntegrityError:
        raise FlowRejected("IRR_UNCITE", location="nom du fichier", value=name.flow_ref) from None
    flow.flow_key = key


def check_size(size: int, limit: int) -> None:
    if size == 0:
        raise FlowRejected("IRR_VIDE", value="0 octet")
    if size > limit:
        raise FlowRejected("IRR_TAILLE", f"{size} octets pour {limit} autorisés", value=str(size))


def check_file_size(size: int, limits: Limits) -> None:
    """One XML file (a flow alone, or a member of an archive) within `max_file_bytes`."""
    if size > limits.max_file_bytes:
        raise FlowRejected("IRR_TAILLE", f"fichier XML de plus de {limits.max_file_bytes} octets")


# ------------------------------------------------------------------ XML documents

_DECL = re.compile(rb"^<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
# One prolog item: white space, a processing instruction (the XML declaration included), a comment.
_PROLOG_ITEM = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->", re.S)
_ROOT_NAME = re.compile(rb"<([A-Za-z_][\w.:-]*)")
XINCLUDE = "{http://www.w3.org/2001/XInclude}*"


def check_prolog(head: bytes, where: str = "") -> str:
    """Refuse a non-UTF-8 (reference §1.4) or DOCTYPE-bearing document (the door to entity
    expansion and external entities) from its first bytes; return the local name of its root
    element (read once, here, where the prolog has just been walked item by item, so a `<a`
    inside a comment cannot hide a DOCTYPE that follows it)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")) or head[:2] in (
        b"\x00<",
        b"<\x00",
    ):
        raise FlowRejected("IRR_SYNTAX", "encodage non UTF-8 (UTF-16/32)", location=where)
    body = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    decl = _DECL.match(body)
    if decl and decl.group(1).lower() not in (b"utf-8", b"utf8"):
        raise FlowRejected(
            "IRR_SYNTAX", "encodage déclaré non UTF-8", location=where, value=decl.group(1).decode("ascii")
        )
    rest = body[_prolog_end(body):]
    if rest.startswith(b"<!"):
        raise FlowRejected("IRR_SYNTAX", "DTD ou déclaration d'entité interdite", location=where)
    if not rest.startswith(b"<") or rest.startswith(b"<?"):
        raise FlowRejected("IRR_SYNTAX", "aucun élément racine au début du fichier", location=where)
    match = _ROOT_NAME.match(rest)
    return match.group(1).decode("ascii", "replace").rpartition(":")[2] if match else ""


def _prolog_end(body: bytes) -> int:
    """Offset of the first byte after the XML declaration, comments, PIs and white space."""
    pos = 0
    while (item := _PROLOG_ITEM.match(body, pos)) is not None and item.end() > pos:
        pos = item.end()
    return pos


def check_no_xinclude(element: etree._Element, where: str = "") -> None:
    """lxml never runs XInclude, but the invoice bytes go on to Saxon (schematron) and to the
    recipient, who might."""
    if next(element.iter(XINCLUDE), None) is not None:
        raise FlowRejected("IRR_SYNTAX", "élément XInclude interdit", location=where)


def check_root(element: etree._Element, name: FlowName, where: str) -> None:
    """A document of the interface's syntax (a CreditNote in a UBL flow, not a CII invoice)."""
    if element.tag not in INTERFACES[name.interface].syntax.roots:
        local = etree.QName(element).localname
        raise FlowRejected("IRR_TYPE", f"document {local} dans un flux {name.interface}", location=where, value=local)


def too_many_elements(max_elements: int, where: str) -> FlowRejected:
    """Memory follows the number of parsed elements, not the bytes: an invoice padded with
    millions of empty elements is refused while it is parsed (`max_invoice_elements`)."""
    return FlowRejected("IRR_TAILLE", f"plus de {max_elements} éléments XML dans une facture", location=where)


def syntax_error(exc: Exception, where: str) -> FlowRejected:
    """Not well-formed (or beyond libxml2's limits: depth, text node size)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return FlowRejected("IRR_SYNTAX", text[:300], location=where)


# ------------------------------------------------------------------ archives (.tar.gz)


def check_tar_header(kind: str, size: int, header_bytes: int) -> None:
    """A PAX / GNU long-name header (`kind`), checked before it is read: `header_bytes` is what
    the headers in front of this member already hold."""
    if kind == "sparse":
        raise FlowRejected("IRR_EXTRAC", "membre creux (sparse) interdit")
    if header_bytes + size > MAX_TAR_HEADER_BYTES:
        raise FlowRejected("IRR_EXTRAC", f"en-têtes de membre de plus de {MAX_TAR_HEADER_BYTES} octets",
                           value=str(header_bytes + size))


def check_entry_count(entries: int, directories: int, limits: Limits) -> None:
    if entries > limits.max_archive_members:
        raise FlowRejected("IRR_EXTRAC", f"plus de {limits.max_archive_members} membres dans l'archive")
    if directories > MAX_TAR_DIRECTORIES:
        raise FlowRejected("IRR_EXTRAC", f"plus de {MAX_TAR_DIRECTORIES} dossiers dans l'archive")


def check_member(member, limits: Limits) -> None:
    """A member (tarfile.TarInfo) that is not a folder: a regular `.xml` file with a relative
    name free of `..`, within `max_file_bytes`."""
    if not member.isreg():
        raise FlowRejected("IRR_EXTRAC", "membre non régulier (lien, périphérique)", value=member.name)
    if _escapes(member.name):
        raise FlowRejected("IRR_EXTRAC", "nom de membre absolu ou avec ..", value=member.name)
    if not member.name.lower().endswith(".xml"):
        raise FlowRejected("IRR_TYPE", "membre d'archive autre que .xml", value=member.name)
    if member.size > limits.max_file_bytes:
        raise FlowRejected("IRR_TAILLE", f"membre de plus de {limits.max_file_bytes} octets", value=member.name)


def _escapes(member_name: str) -> bool:
    """A member name that would land outside an extraction folder (never extracted here, but
    such an archive is hostile, and its names end up in reports and logs)."""
    name = member_name.replace("\\", "/")
    return name.startswith("/") or re.match(r"^[A-Za-z]:", name) is not None or ".." in name.split("/")


def check_member_data(data: bytes, member_name: str) -> None:
    if not data:
        raise FlowRejected("IRR_VIDE", "fichier vide dans l'archive", value=member_name)


def check_decompressed(position: int, limits: Limits) -> None:
    """The decompressed stream, checked as it is read (gzip bombs, headers that claim little)."""
    if position > limits.max_flow_bytes:
        raise FlowRejected("IRR_TAILLE", "archive décompressée au-delà de la limite")


def check_archive_found(invoices: int) -> None:
    if invoices == 0:
        raise FlowRejected("IRR_VIDE", "archive sans facture")


def unreadable_archive(exc: Exception) -> FlowRejected:
    """Not a tar, a cut gzip stream, a bad CRC or length at the gzip trailer."""
    return FlowRejected("IRR_EXTRAC", str(exc)[:200])


# ------------------------------------------------------------------ CPP bulk flows (FSO1110A)


@dataclass
class Envelope:
    params: dict[str, str] = field(default_factory=dict)
    sender: str = ""
    receiver: str = ""
    declared: int | None = None


def check_cpp_root(root: str) -> None:
    if root != CPP_FLOW:
        raise FlowRejected("IRR_TYPE", f"racine {root or '?'} dans un flux FSO1110A", value=root)


def check_invoice_parent(invoice: etree._Element, invoices: etree._Element | None) -> None:
    if invoices is None or invoice.getparent() is not invoices:
        raise FlowRejected("IRR_SYNTAX", "facture hors de CPPFactures")


def check_cpp_shape(root: etree._Element | None, invoices: etree._Element | None) -> None:
    """Under CPPFactureMixte the envelope then CPPFactures, under CPPFactures invoices only.
    Checked as the flow is parsed (the splitter calls it often enough that padding outside the
    invoices is refused after a few hundred elements, never kept by the million)."""
    for position, child in enumerate(() if root is None else root):
        if position == 0 and child.tag == CPP_INVOICES:
            raise FlowRejected("IRR_SYNTAX", "CPPFactures avant l'enveloppe")
        if (position, child.tag) not in ((0, CPP_ENVELOPE), (1, CPP_INVOICES)):
            _not_allowed(child, CPP_FLOW)
    for child in () if invoices is None else invoices:
        if child.tag != CPP_INVOICE:
            _not_allowed(child, CPP_INVOICES)


def _not_allowed(child: etree._Element, parent: str) -> None:
    local = child.tag if isinstance(child.tag, str) else "?"
    raise FlowRejected("IRR_SYNTAX", f"élément {local} non autorisé dans {parent}", location=parent, value=local)


def check_envelope(element: etree._Element, envelope: Envelope, name: FlowName) -> None:
    """The envelope against the CPP XSD, its parameters, its sender; fills `envelope`."""
    findings = xsd.validate(element, "CPP")
    if findings:
        first = findings[0]
        raise FlowRejected("IRR_SYNTAX", f"enveloppe invalide — {first.message}", location=first.location)
    for param in element.iterfind("EnveloppeUnitaire/Parametres/ParametreIndiv"):
        envelope.params[param.findtext("Code", "").strip()] = param.findtext("Valeurparametre", "").strip()
    envelope.sender = element.findtext("EnveloppeUnitaire/Partenaires/Emetteur/Id", "").strip()
    envelope.receiver = element.findtext("EnveloppeUnitaire/Partenaires/Recepteur/Id", "").strip()
    if "IdFlx" not in envelope.params or "DtPrd" not in envelope.params:
        raise FlowRejected("IRR_SYNTAX", "paramètres DtPrd et IdFlx obligatoires", location="Enveloppe/Parametres")
    if envelope.sender and envelope.sender != name.app:
        raise FlowRejected(
            "IRR_CODE_APP", "émetteur de l'enveloppe différent du nom du fichier",
            location="Enveloppe/EnveloppeUnitaire/Partenaires/Emetteur/Id", value=envelope.sender,
        )


def check_cpp_end(envelope: Envelope, seen_envelope: bool, found: int) -> None:
    """At the end of the flow: an envelope, invoices, and `Compteur` equal to what was found."""
    if not seen_envelope:
        raise FlowRejected("IRR_SYNTAX", "enveloppe absente", location="CPPFactureMixte/Enveloppe")
    if found == 0:
        raise FlowRejected("IRR_VIDE", "aucune facture dans CPPFactures")
    if envelope.declared is None:
        raise FlowRejected("IRR_SYNTAX", "attribut Compteur absent ou non numérique", location="CPPFactures/@Compteur")
    if envelope.declared != found:
        raise FlowRejected(
            "IRR_SYNTAX", f"Compteur déclaré {envelope.declared}, {found} factures trouvées",
            location="CPPFactures/@Compteur", value=str(envelope.declared),
        )


# ------------------------------------------------------------------ status flows (FEN1200A)

_STATUS_CHILDREN = ("Enveloppe", CPP_STATUS_LINES)


def check_status_root(root: str) -> None:
    """A recipient's status flow is a CPPStatut document."""
    if root != CPP_STATUS:
        raise FlowRejected("IRR_TYPE", f"racine {root or '?'} dans un flux FEN1200A (attendu {CPP_STATUS})",
                           value=root)


def check_status_child(tag: str) -> None:
    """Under CPPStatut: the envelope, then the invoice block (the flow block is for the
    platform's own reports)."""
    if tag not in _STATUS_CHILDREN:
        detail = ("bloc CPPFluxStatuts : un destinataire envoie des statuts de factures (CPPFactureStatuts)"
                  if tag == "CPPFluxStatuts" else f"élément {tag} inattendu sous {CPP_STATUS}")
        raise FlowRejected("IRR_SYNTAX", detail, location=f"{CPP_STATUS}/{tag}")


def check_status_line_parent(parent: str) -> None:
    if parent != CPP_STATUS_LINES:
        raise FlowRejected("IRR_SYNTAX", f"{CPP_STATUS_LINE} hors de {CPP_STATUS_LINES}", location=parent)


def check_status_count(declared: str | None, found: int) -> None:
    """At the end of a status flow: at least one line, and `compteur` equal to the lines found."""
    if found == 0:
        raise FlowRejected("IRR_VIDE", f"aucun statut dans {CPP_STATUS_LINES}")
    if declared is None or not declared.isdigit():
        raise FlowRejected("IRR_SYNTAX", "attribut compteur absent ou non numérique",
                           location=f"{CPP_STATUS_LINES}/@compteur")
    if int(declared) != found:
        raise FlowRejected("IRR_SYNTAX", f"compteur déclaré {declared}, {found} statuts trouvés",
                           location=f"{CPP_STATUS_LINES}/@compteur", value=declared)
