"""Read a flow file safely and stream its invoices out one by one.

Hostile input is refused before and during parsing, never expanded:
- the prolog is sniffed first: a byte-order mark other than UTF-8, an encoding declaration
  other than UTF-8 (reference §1.4: all XML received must be UTF-8) or any DOCTYPE (the door to
  entity expansion and external entities) makes the flow `IRR_SYNTAX`; the prolog is walked
  item by item (comments, processing instructions), so a `<a` inside a comment cannot hide a
  DOCTYPE that follows it;
- an XInclude element anywhere makes the flow `IRR_SYNTAX`: lxml never runs XInclude, but the
  invoice bytes go on to Saxon (schematron) and to the recipient, who might;
- lxml runs with entities unresolved, no DTD loading, no network, and libxml2's hard limits kept
  (`huge_tree` off: depth <= 256, one text node <= 10,000,000 characters, so a base64 attachment
  of up to about 7 MB decoded per `Contenu`);
- a `.tar.gz` is read as a stream: only regular `.xml` members with a relative name free of
  `..`, each within `[limits] max_file_bytes`, the whole within `max_flow_bytes` uncompressed
  (gzip bombs); the gzip stream is read to its end and its CRC and length checked, so a
  truncated upload (cut between two members, which tar alone cannot tell) is `IRR_EXTRAC`.

CPP bulk flows are parsed with iterparse and every invoice element is freed once the consumer
has used it, so memory does not grow with the number of invoices. A content problem discovered
late (truncated file, `Compteur` not equal to the invoices found) raises `FlowRejected` at the
point it is found: the consumer must not commit anything before the iteration has ended.
"""

from __future__ import annotations

import gzip
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from lxml import etree

from edi.validate import xsd
from edi.validate.flowchecks import FlowName, FlowRejected

UBL_INVOICE = "{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice"
UBL_CREDIT = "{urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2}CreditNote"
CII = "{urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100}CrossIndustryInvoice"
ROOTS = {"FSO1100A": (UBL_INVOICE, UBL_CREDIT), "FSO1106A": (CII,), "FSO1110A": ("CPPFactureMixte",)}
UNIT = "CPPFactureMixteUnitaire"

_DECL = re.compile(rb"^<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
# One prolog item: white space, a processing instruction (the XML declaration included), a comment.
_PROLOG_ITEM = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->", re.S)
_ROOT_NAME = re.compile(rb"<([A-Za-z_][\w.:-]*)")
XINCLUDE = "{http://www.w3.org/2001/XInclude}*"
_SNIFF_BYTES = 65536


@dataclass(frozen=True)
class Limits:
    max_flow_bytes: int
    max_file_bytes: int


@dataclass
class Piece:
    """One invoice of the flow: its element (valid until the next one is read) and its bytes."""

    seq: int
    element: etree._Element
    raw: bytes
    member: str = ""


@dataclass
class Envelope:
    params: dict[str, str] = field(default_factory=dict)
    sender: str = ""
    receiver: str = ""
    declared: int | None = None


def sniff(head: bytes, where: str = "") -> str:
    """Refuse a non-UTF-8 or DOCTYPE-bearing document from its first bytes; return the local
    name of its root element (read once, here, where the prolog has just been walked)."""
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


def refuse_xinclude(element: etree._Element, where: str = "") -> None:
    if next(element.iter(XINCLUDE), None) is not None:
        raise FlowRejected("IRR_SYNTAX", "élément XInclude interdit", location=where)


def _prolog_end(body: bytes) -> int:
    """Offset of the first byte after the XML declaration, comments, PIs and white space."""
    pos = 0
    while (item := _PROLOG_ITEM.match(body, pos)) is not None and item.end() > pos:
        pos = item.end()
    return pos


def _syntax_error(exc: Exception, where: str) -> FlowRejected:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return FlowRejected("IRR_SYNTAX", text[:300], location=where)


_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
)


def parse_document(data: bytes, where: str) -> etree._Element:
    sniff(data[:_SNIFF_BYTES], where)
    try:
        element = etree.fromstring(data, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise _syntax_error(exc, where) from None
    refuse_xinclude(element, where)
    return element


def _check_root(element: etree._Element, name: FlowName, where: str) -> None:
    if element.tag not in ROOTS[name.interface]:
        raise FlowRejected(
            "IRR_TYPE", f"document {etree.QName(element).localname} dans un flux {name.interface}",
            location=where, value=etree.QName(element).localname,
        )


def read_flow(path: Path, name: FlowName, limits: Limits) -> Iterator[Piece]:
    """Yield the invoices of the flow at `path` in order; raise FlowRejected when irrecevable."""
    if name.interface == "FSO1110A":
        yield from _read_cpp(path, name, Envelope())
    elif name.extension == "tar.gz":
        yield from _read_tar(path, name, limits)
    else:
        if path.stat().st_size > limits.max_file_bytes:
            raise FlowRejected("IRR_TAILLE", f"fichier XML de plus de {limits.max_file_bytes} octets")
        data = path.read_bytes()
        element = parse_document(data, path.name)
        _check_root(element, name, path.name)
        yield Piece(seq=1, element=element, raw=data, member=path.name)


def _read_tar(path: Path, name: FlowName, limits: Limits) -> Iterator[Piece]:
    seq = 0
    total = 0
    try:
        with gzip.open(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                if member.isdir():
                    continue
                if not member.isreg():
                    raise FlowRejected("IRR_EXTRAC", "membre non régulier (lien, périphérique)", value=member.name)
                if _escapes(member.name):
                    raise FlowRejected("IRR_EXTRAC", "nom de membre absolu ou avec ..", value=member.name)
                if not member.name.lower().endswith(".xml"):
                    raise FlowRejected("IRR_TYPE", "membre d'archive autre que .xml", value=member.name)
                if member.size > limits.max_file_bytes:
                    raise FlowRejected("IRR_TAILLE", f"membre de plus de {limits.max_file_bytes} octets", value=member.name)
                total += member.size
                if total > limits.max_flow_bytes:
                    raise FlowRejected("IRR_TAILLE", "archive décompressée au-delà de la limite")
                fh = archive.extractfile(member)
                data = fh.read() if fh else b""
                if not data:
                    raise FlowRejected("IRR_VIDE", "fichier vide dans l'archive", value=member.name)
                element = parse_document(data, member.name)
                _check_root(element, name, member.name)
                seq += 1
                yield Piece(seq=seq, element=element, raw=data, member=member.name)
            while stream.read(1 << 16):  # to the gzip trailer: CRC and length checked there
                if stream.tell() > limits.max_flow_bytes:
                    raise FlowRejected("IRR_TAILLE", "archive décompressée au-delà de la limite")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise FlowRejected("IRR_EXTRAC", str(exc)[:200]) from None
    if seq == 0:
        raise FlowRejected("IRR_VIDE", "archive sans facture")


def _escapes(member_name: str) -> bool:
    """A member name that would land outside an extraction folder (never extracted here, but
    such an archive is hostile, and its names end up in reports and logs)."""
    name = member_name.replace("\\", "/")
    return name.startswith("/") or re.match(r"^[A-Za-z]:", name) is not None or ".." in name.split("/")


def _read_cpp(path: Path, name: FlowName, envelope: Envelope) -> Iterator[Piece]:
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    root = sniff(head, path.name)
    if root != "CPPFactureMixte":
        raise FlowRejected("IRR_TYPE", f"racine {root or '?'} dans un flux FSO1110A", value=root)
    seq = 0
    seen_envelope = False
    context = etree.iterparse(
        str(path), events=("start", "end"), tag=("CPPFactureMixte", "Enveloppe", "CPPFactures", UNIT),
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True,
    )
    try:
        for event, element in context:
            tag = element.tag
            if event == "start":
                if tag == "CPPFactures":
                    if not seen_envelope:
                        raise FlowRejected("IRR_SYNTAX", "CPPFactures avant l'enveloppe")
                    declared = element.get("Compteur")
                    envelope.declared = int(declared) if declared and declared.isdigit() else None
                continue
            if tag == "Enveloppe":
                _check_envelope(element, envelope, name)
                seen_envelope = True
                element.clear()
            elif tag == UNIT:
                parent = element.getparent()
                if parent is None or parent.tag != "CPPFactures":
                    raise FlowRejected("IRR_SYNTAX", "facture hors de CPPFactures")
                refuse_xinclude(element, path.name)
                seq += 1
                raw = etree.tostring(element, encoding="UTF-8", xml_declaration=True)
                yield Piece(seq=seq, element=element, raw=raw)
                element.clear()
                while element.getprevious() is not None:
                    del parent[0]
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, path.name) from None
    if not seen_envelope:
        raise FlowRejected("IRR_SYNTAX", "enveloppe absente", location="CPPFactureMixte/Enveloppe")
    if seq == 0:
        raise FlowRejected("IRR_VIDE", "aucune facture dans CPPFactures")
    if envelope.declared is None:
        raise FlowRejected("IRR_SYNTAX", "attribut Compteur absent ou non numérique", location="CPPFactures/@Compteur")
    if envelope.declared != seq:
        raise FlowRejected(
            "IRR_SYNTAX", f"Compteur déclaré {envelope.declared}, {seq} factures trouvées",
            location="CPPFactures/@Compteur", value=str(envelope.declared),
        )


def _check_envelope(element: etree._Element, envelope: Envelope, name: FlowName) -> None:
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
