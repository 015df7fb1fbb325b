"""Read a flow file safely and stream its invoices out one by one.

This module is the mechanics of reading; every decision about what a flow may hold — and the
code and message of each refusal — is a check of `edi.validate.flowchecks`, called at the point
the stream meets the problem. Hostile input is refused before and during parsing, never expanded:
- the prolog is sniffed first (encoding, DOCTYPE), then lxml runs with entities unresolved, no
  DTD loading, no network, and libxml2's hard limits kept (`huge_tree` off: depth <= 256, one
  text node <= 10,000,000 characters, so a base64 attachment of up to about 7 MB decoded per
  `Contenu`); an XInclude element anywhere is refused;
- a `.tar.gz` is read as a stream, member after member; the gzip stream is read to its end and
  its CRC and length checked, so a truncated upload (cut between two members, which tar alone
  cannot tell) is `IRR_EXTRAC`.

CPP bulk flows are parsed with iterparse and every invoice element is freed once the consumer
has used it, so memory does not grow with the number of invoices. A content problem discovered
late (truncated file, `Compteur` not equal to the invoices found) raises `FlowRejected` at the
point it is found: the consumer must not commit anything before the iteration has ended.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from lxml import etree

from edi.interfaces import CPP, CPP_ENVELOPE, CPP_FLOW, CPP_INVOICE, CPP_INVOICES, INTERFACES
from edi.validate import flowchecks as checks
from edi.validate.flowchecks import Envelope, FlowName, FlowRejected, Limits

_SNIFF_BYTES = 65536


@dataclass
class Piece:
    """One invoice of the flow: its element (valid until the next one is read) and its bytes."""

    seq: int
    element: etree._Element
    raw: bytes
    member: str = ""


_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
)


def parse_document(data: bytes, where: str) -> etree._Element:
    checks.check_prolog(data[:_SNIFF_BYTES], where)
    try:
        element = etree.fromstring(data, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise checks.syntax_error(exc, where) from None
    checks.check_no_xinclude(element, where)
    return element


def read_flow(path: Path, name: FlowName, limits: Limits) -> Iterator[Piece]:
    """Yield the invoices of the flow at `path` in order; raise FlowRejected when irrecevable."""
    if INTERFACES[name.interface].syntax is CPP:
        yield from _read_cpp(path, name, Envelope())
    elif name.extension == "tar.gz":
        yield from _read_tar(path, name, limits)
    else:
        checks.check_file_size(path.stat().st_size, limits)
        data = path.read_bytes()
        element = parse_document(data, path.name)
        checks.check_root(element, name, path.name)
        yield Piece(seq=1, element=element, raw=data, member=path.name)


def _read_tar(path: Path, name: FlowName, limits: Limits) -> Iterator[Piece]:
    seq = 0
    total = 0
    try:
        with gzip.open(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                if member.isdir():
                    continue
                checks.check_member(member, limits)
                total += member.size
                checks.check_decompressed(total, limits)
                fh = archive.extractfile(member)
                data = fh.read() if fh else b""
                checks.check_member_data(data, member.name)
                element = parse_document(data, member.name)
                checks.check_root(element, name, member.name)
                seq += 1
                yield Piece(seq=seq, element=element, raw=data, member=member.name)
            while stream.read(1 << 16):  # to the gzip trailer: CRC and length checked there
                checks.check_decompressed(stream.tell(), limits)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise checks.unreadable_archive(exc) from None
    checks.check_archive_found(seq)


def _read_cpp(path: Path, name: FlowName, envelope: Envelope) -> Iterator[Piece]:
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    checks.check_cpp_root(checks.check_prolog(head, path.name))
    seq = 0
    seen_envelope = False
    context = etree.iterparse(
        str(path), events=("start", "end"), tag=(CPP_FLOW, CPP_ENVELOPE, CPP_INVOICES, CPP_INVOICE),
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True,
    )
    try:
        for event, element in context:
            tag = element.tag
            if event == "start":
                if tag == CPP_INVOICES:
                    checks.check_invoices_after_envelope(seen_envelope)
                    declared = element.get("Compteur")
                    envelope.declared = int(declared) if declared and declared.isdigit() else None
                continue
            if tag == CPP_ENVELOPE:
                checks.check_envelope(element, envelope, name)
                seen_envelope = True
                element.clear()
            elif tag == CPP_INVOICE:
                parent = element.getparent()
                checks.check_invoice_parent(parent)
                checks.check_no_xinclude(element, path.name)
                seq += 1
                raw = etree.tostring(element, encoding="UTF-8", xml_declaration=True)
                yield Piece(seq=seq, element=element, raw=raw)
                element.clear()
                while element.getprevious() is not None:
                    del parent[0]
    except etree.XMLSyntaxError as exc:
        raise checks.syntax_error(exc, path.name) from None
    checks.check_cpp_end(envelope, seen_envelope, seq)
