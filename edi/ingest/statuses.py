"""Read a recipient's status flow (`FEN1200A_<APP>_<FLOWID>.xml`) as a stream of status lines.

A CPPStatut V1_19 with a `CPPFactureStatuts` block (design, "Life cycle after deposit"). Read
like a CPP invoice flow (`edi.ingest.split`): the prolog sniffed first, lxml with no entities,
no DTD, no network; iterparse, each line freed once read, so memory does not grow with the
number of lines; the elements of each line (and outside them) counted against
`max_invoice_elements`. Flow-level problems raise `FlowRejected` where they are met (codes and
messages in `edi.validate.flowchecks`): the consumer commits nothing before the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from lxml import etree

from edi.interfaces import CPP_STATUS_LINE, CPP_STATUS_LINES
from edi.ingest.split import _PARSE, _SNIFF_BYTES
from edi.route.statusflow import StatusLine
from edi.validate import flowchecks as checks
from edi.validate.flowchecks import Limits

_XINCLUDE_NS = "{http://www.w3.org/2001/XInclude}"


def read_statuses(path: Path, limits: Limits) -> Iterator[StatusLine]:
    """Yield the status lines of the flow at `path`, in order; FlowRejected when irrecevable."""
    checks.check_file_size(path.stat().st_size, limits)
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    checks.check_status_root(checks.check_prolog(head, path.name))
    context = etree.iterparse(str(path), events=("start", "end"), remove_comments=True, remove_pis=True, **_PARSE)
    depth = elements = found = 0
    declared = None
    try:
        for event, element in context:
            if event == "start":
                depth += 1
                elements += 1
                if elements > limits.max_invoice_elements:
                    raise checks.too_many_elements(limits.max_invoice_elements, path.name)
                if depth == 2:
                    checks.check_status_child(element.tag)
                    if element.tag == CPP_STATUS_LINES:
                        declared = element.get("compteur")
                elif element.tag == CPP_STATUS_LINE:
                    checks.check_status_line_parent(element.getparent().tag)
                if element.tag.startswith(_XINCLUDE_NS):
                    checks.check_no_xinclude(element, path.name)
                continue
            depth -= 1
            if element.tag == CPP_STATUS_LINE:
                found += 1
                yield _line(found, element)
                element.clear()
                while element.getprevious() is not None:
                    del element.getparent()[0]
                elements = 0
            elif depth == 1 and element.tag == "Enveloppe":
                element.clear()
    except etree.XMLSyntaxError as exc:
        raise checks.syntax_error(exc, path.name) from None
    finally:
        del context
    checks.check_status_count(declared, found)


def _line(seq: int, unit: etree._Element) -> StatusLine:
    def text(where: str) -> str:
        return (unit.findtext(where) or "").strip()

    producer = unit.find("DonneesStatut/Producteur")
    return StatusLine(
        seq=seq, supplier_id_type=text("Fournisseur/TypeIdentifiant"), supplier_id=text("Fournisseur/Identifiant"),
        recipient_siret=text("Debiteur/Identifiant"), code_service=text("Debiteur/CodeService"),
        status=text("DonneesStatut/IdStatut"), reason=text("DonneesStatut/ComplementStatut"),
        comment=text("DonneesStatut/Commentaire"), number=text("DonneesStatut/IdFacture"),
        invoice_date=text("DonneesStatut/DateFacture"), mandate=text("DonneesStatut/IdMandatDP"),
        producer=(producer.get("Id") or "") if producer is not None else "",
    )

