"""Read a flow file safely and stream its invoices out one by one.

This module is the mechanics of reading; every decision about what a flow may hold — and the
code and message of each refusal — is a check of `edi.validate.flowchecks`, called at the point
the stream meets the problem. Hostile input is refused before and during parsing, never expanded:
- the prolog is sniffed first (encoding, DOCTYPE), then lxml runs with entities unresolved, no
  DTD loading, no network, and libxml2's hard limits kept (`huge_tree` off: depth <= 256, one
  text node <= 10,000,000 characters, so a base64 attachment of up to about 7 MB decoded per
  `Contenu`); an XInclude element anywhere is refused;
- memory follows the number of parsed elements, not the bytes (a 50 MB file of `<x/>` is 13
  million elements, ~1.7 GB once parsed): the elements of each invoice are counted
  (`max_invoice_elements`) before they are all kept, and a CPP flow, parsed as a stream of
  element starts, has its shape checked as it goes, so padding outside the invoices is refused
  before it is kept;
- a `.tar.gz` is read as a stream, member after member, through a counter of decompressed bytes
  checked at every read (`max_flow_bytes`); tarfile keeps a PAX or GNU long-name header whole in
  memory, so its size is checked before it is read, and the entries are counted; the gzip stream
  is read to its end and its CRC and length checked, so a truncated upload (cut between two
  members, which tar alone cannot tell) is `IRR_EXTRAC`.

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

from edi.interfaces import CPP, CPP_ENVELOPE, CPP_INVOICE, CPP_INVOICES, INTERFACES
from edi.validate import flowchecks as checks
from edi.validate.flowchecks import Envelope, FlowName, Limits

_SNIFF_BYTES = 65536


@dataclass
class Piece:
    """One invoice of the flow: its element (valid until the next one is read) and its bytes."""

    seq: int
    element: etree._Element
    raw: bytes
    member: str = ""


_PARSE = dict(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
_PARSER = etree.XMLParser(dtd_validation=False, **_PARSE)


def parse_document(data: bytes, where: str, max_elements: int = Limits.max_invoice_elements) -> etree._Element:
    """One whole document (an invoice alone or in an archive). Every element starts with a `<`:
    a document with more `<` than `max_elements` (a few times more `<` than elements, or
    padding) has its elements counted first by a parser that builds nothing."""
    checks.check_prolog(data[:_SNIFF_BYTES], where)
    try:
        if data.count(b"<") > max_elements:
            etree.fromstring(data, etree.XMLParser(target=_ElementCounter(max_elements, where), **_PARSE))
        element = etree.fromstring(data, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise checks.syntax_error(exc, where) from None
    checks.check_no_xinclude(element, where)
    return element


class _ElementCounter:
    """Parser target: counts element starts and refuses past the limit, keeping nothing."""

    def __init__(self, limit: int, where: str):
        self.limit, self.where, self.count = limit, where, 0

    def start(self, tag, attrib) -> None:
        self.count += 1
        if self.count > self.limit:
            raise checks.too_many_elements(self.limit, self.where)

    def close(self) -> int:
        return self.count


def read_flow(path: Path, name: FlowName, limits: Limits) -> Iterator[Piece]:
    """Yield the invoices of the flow at `path` in order; raise FlowRejected when irrecevable."""
    if INTERFACES[name.interface].syntax is CPP:
        yield from _read_cpp(path, name, limits)
    elif name.extension == "tar.gz":
        yield from _read_tar(path, name, limits)
    else:
        checks.check_file_size(path.stat().st_size, limits)
        data = path.read_bytes()
        element = parse_document(data, path.name, limits.max_invoice_elements)
        checks.check_root(element, name, path.name)
        yield Piece(seq=1, element=element, raw=data, member=path.name)


class _Counted:
    """The decompressed stream of an archive: its position checked at every read, so a bomb is
    refused as it expands, whatever its headers say."""

    def __init__(self, raw, limits: Limits):
        self.raw, self.limits, self.position = raw, limits, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.position += len(data)
        checks.check_decompressed(self.position, self.limits)
        return data


# header type -> kind of check_tar_header (what tarfile reads whole into memory)
_HEADER_KINDS = {
    tarfile.XHDTYPE: "pax", tarfile.XGLTYPE: "pax", tarfile.SOLARIS_XHDTYPE: "pax",
    tarfile.GNUTYPE_LONGNAME: "gnu", tarfile.GNUTYPE_LONGLINK: "gnu", tarfile.GNUTYPE_SPARSE: "sparse",
}


class _Header(tarfile.TarInfo):
    """`TarInfo.fromtarfile` with the size of a PAX / GNU header checked before tarfile reads
    it (`_proc_member` then reads it, and chains to the member it describes)."""

    @classmethod
    def fromtarfile(cls, archive):
        buf = archive.fileobj.read(tarfile.BLOCKSIZE)
        info = cls.frombuf(buf, archive.encoding, archive.errors)
        info.offset = archive.fileobj.tell() - tarfile.BLOCKSIZE
        kind = _HEADER_KINDS.get(info.type)
        if kind:
            checks.check_tar_header(kind, info.size, archive.header_bytes)
            archive.header_bytes += tarfile.BLOCKSIZE + info.size
            if info.type == tarfile.XGLTYPE:  # kept by tarfile for every later member
                archive.global_bytes += tarfile.BLOCKSIZE + info.size
        return info._proc_member(archive)


class _Archive(tarfile.TarFile):
    tarinfo = _Header
    header_bytes = 0  # PAX / GNU headers read in front of the member being read, globals included
    global_bytes = 0  # PAX global headers read so far


def _read_tar(path: Path, name: FlowName, limits: Limits) -> Iterator[Piece]:
    seq = entries = directories = 0
    total = 0
    try:
        with gzip.open(path, "rb") as raw:
            stream = _Counted(raw, limits)
            with _Archive.open(fileobj=stream, mode="r|") as archive:
                while (member := archive.next()) is not None:
                    archive.header_bytes = archive.global_bytes
                    archive.members.clear()  # tarfile keeps every header it read, even streaming
                    entries += 1
                    directories += member.isdir()
                    checks.check_entry_count(entries, directories, limits)
                    if member.isdir():
                        continue
                    checks.check_member(member, limits)
                    total += member.size
                    checks.check_decompressed(total, limits)
                    fh = archive.extractfile(member)
                    data = fh.read() if fh else b""
                    checks.check_member_data(data, member.name)
                    element = parse_document(data, member.name, limits.max_invoice_elements)
                    checks.check_root(element, name, member.name)
                    seq += 1
                    yield Piece(seq=seq, element=element, raw=data, member=member.name)
            while stream.read(1 << 16):  # to the gzip trailer: CRC and length checked there
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise checks.unreadable_archive(exc) from None
    checks.check_archive_found(seq)


def _read_cpp(path: Path, name: FlowName, limits: Limits) -> Iterator[Piece]:
    """The envelope, then each invoice, from `start` events only (half the events of start and
    end; an invoice is complete when the next one starts, or when the flow ends). Every element
    is counted against `max_invoice_elements` for its invoice or envelope, and the shape under
    CPPFactureMixte and CPPFactures is checked at each of their children and every
    `_SHAPE_EVERY` elements, so padding outside the invoices is refused before much is kept."""
    checks.check_file_size(path.stat().st_size, limits)
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    checks.check_cpp_root(checks.check_prolog(head, path.name))
    envelope = Envelope()
    root = envelope_element = invoices = invoice = None
    seq = elements = 0
    context = etree.iterparse(str(path), events=("start",), remove_comments=True, remove_pis=True, **_PARSE)
    try:
        for _, element in context:
            elements += 1
            if elements > limits.max_invoice_elements:
                raise checks.too_many_elements(limits.max_invoice_elements, path.name)
            tag = element.tag
            if root is None:
                checks.check_cpp_root(tag)
                root = element
                continue
            if tag not in _CPP_SHAPE or (tag != CPP_INVOICE and element.getparent() is not root):
                if elements % _SHAPE_EVERY == 0:
                    checks.check_cpp_shape(root, invoices)
                continue
            elements = 0
            if tag == CPP_INVOICE:
                checks.check_invoice_parent(element, invoices)
                checks.check_cpp_shape(root, invoices)
                if invoice is not None:
                    seq += 1
                    yield _piece(invoice, seq, path.name)
                    _free(invoice)
                invoice = element
                continue
            if tag == CPP_ENVELOPE:
                envelope_element = element
            else:
                invoices = element
                declared = element.get("Compteur")
                envelope.declared = int(declared) if declared and declared.isdigit() else None
            checks.check_cpp_shape(root, invoices)
            if invoices is not None and envelope_element is not None:
                checks.check_envelope(envelope_element, envelope, name)
                envelope_element.clear()
    except etree.XMLSyntaxError as exc:
        raise checks.syntax_error(exc, path.name) from None
    checks.check_cpp_shape(root, invoices)
    if envelope_element is not None and invoices is None:
        checks.check_envelope(envelope_element, envelope, name)
    if invoice is not None:
        seq += 1
        yield _piece(invoice, seq, path.name)
    checks.check_cpp_end(envelope, envelope_element is not None, seq)


_CPP_SHAPE = frozenset((CPP_ENVELOPE, CPP_INVOICES, CPP_INVOICE))
_SHAPE_EVERY = 1024


def _piece(invoice: etree._Element, seq: int, where: str) -> Piece:
    checks.check_no_xinclude(invoice, where)
    return Piece(seq=seq, element=invoice, raw=etree.tostring(invoice, encoding="UTF-8", xml_declaration=True))


def _free(invoice: etree._Element) -> None:
    """Once the consumer is done with an invoice: its content, then its place in CPPFactures."""
    invoice.clear()
    parent = invoice.getparent()
    while len(parent) and parent[0] is not invoice:
        del parent[0]
    del parent[0]
