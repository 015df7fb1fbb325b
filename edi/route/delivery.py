"""Delivery of an accepted invoice to its recipient's folder (design: spool/recipients/).

Files are staged under `spool/work/flow-<id>/` while the flow is read, then moved into
`recipients/<SIRET>/<CODE_SERVICE or _>/` once the flow is known to be recevable. Names derive
from the deposit number, which derives from the flow id and the invoice position: a replay
after a crash lands on the same names with the same bytes, so nothing is delivered twice.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

from lxml import etree

from edi.spool import Spool, safe_name


def deposit_number(flow_id: int, seq: int) -> str:
    """25 characters like Chorus Pro's (`CPP0011113000000000044750`): EDI + flow + position."""
    return f"EDI{flow_id:010d}{seq:012d}"


def certificate(raw: bytes) -> str:
    """Deposit certificate as Chorus Pro prints it: base64 of the SHA-256 of the invoice bytes."""
    return base64.b64encode(hashlib.sha256(raw).digest()).decode("ascii")


@dataclass(frozen=True, slots=True)
class Staged:
    files: tuple[tuple[str, str], ...]  # (staged path, final file name)


class Deliveries:
    """Stages and delivers the invoices of one flow. Plain string paths and a memory of the
    folders already made: this runs for every invoice, and each avoided system call counts."""

    def __init__(self, spool: Spool, flow_id: int):
        self.spool = spool
        self.folder = str(spool.staging(flow_id))
        self._made: set[str] = set()
        self._targets: dict[tuple[str, str], str] = {}  # (SIRET, code service) -> its folder, made

    def _ensure(self, folder: str) -> None:
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)

    def stage(self, seq: int, deposit: str, raw: bytes, element: etree._Element | None) -> Staged:
        """Write the invoice (and, for CPP, its decoded `PJ` attachments) to the staging folder."""
        self._ensure(self.folder)
        first = f"{self.folder}/{seq:06d}.xml"
        _write(first, raw)
        files = [(first, f"{deposit}.xml")]
        for n, pj in enumerate(element.iterfind("PJ") if element is not None else (), start=1):
            try:
                payload = base64.b64decode(pj.findtext("Contenu") or "", validate=False)
            except (binascii.Error, ValueError):
                continue  # an undecodable attachment stays inside the invoice XML, which is delivered
            path = f"{self.folder}/{seq:06d}_PJ{n}"
            _write(path, payload)
            files.append((path, f"{deposit}_PJ{n}_{safe_name(pj.findtext('NomPJ') or 'piece', 'piece')}"))
        return Staged(tuple(files))

    def deliver(self, staged: Staged, siret: str, code_service: str) -> str:
        """Move the staged files into the recipient's folder; returns the invoice's final path."""
        target = self._targets.get((siret, code_service))
        if target is None:
            target = str(self.spool.recipient_dir(siret, code_service))
            self._ensure(target)
            self._targets[siret, code_service] = target
        for path, name in staged.files:
            os.replace(path, f"{target}/{name}")
        return f"{target}/{staged.files[0][1]}"


def _write(path: str, data: bytes) -> None:
    """A new file holding `data`, in three system calls (`open()` adds an fstat and an ioctl,
    and two Python objects: a sixth of the staging of an invoice)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
