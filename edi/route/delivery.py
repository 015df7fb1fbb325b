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
from pathlib import Path

from lxml import etree

from edi.ingest.spool import Spool, safe_name


def deposit_number(flow_id: int, seq: int) -> str:
    """25 characters like Chorus Pro's (`CPP0011113000000000044750`): EDI + flow + position."""
    return f"EDI{flow_id:010d}{seq:012d}"


def certificate(raw: bytes) -> str:
    """Deposit certificate as Chorus Pro prints it: base64 of the SHA-256 of the invoice bytes."""
    return base64.b64encode(hashlib.sha256(raw).digest()).decode("ascii")


@dataclass(frozen=True)
class Staged:
    files: tuple[tuple[Path, str], ...]  # (staged path, final file name)


def stage(spool: Spool, flow_id: int, seq: int, deposit: str, raw: bytes, element: etree._Element | None) -> Staged:
    """Write the invoice (and, for CPP, its decoded `PJ` attachments) to the staging folder."""
    folder = spool.staging(flow_id)
    folder.mkdir(parents=True, exist_ok=True)
    files = [(folder / f"{seq:06d}.xml", f"{deposit}.xml")]
    files[0][0].write_bytes(raw)
    for n, pj in enumerate(element.iterfind("PJ") if element is not None else (), start=1):
        content = pj.findtext("Contenu") or ""
        try:
            payload = base64.b64decode(content, validate=False)
        except (binascii.Error, ValueError):
            continue  # an undecodable attachment stays inside the invoice XML, which is delivered
        name = f"{deposit}_PJ{n}_{safe_name(pj.findtext('NomPJ') or 'piece', 'piece')}"
        path = folder / f"{seq:06d}_PJ{n}"
        path.write_bytes(payload)
        files.append((path, name))
    return Staged(tuple(files))


def deliver(spool: Spool, staged: Staged, siret: str, code_service: str) -> Path:
    """Move the staged files into the recipient's folder; returns the invoice's final path."""
    target = spool.recipient_dir(siret, code_service)
    target.mkdir(parents=True, exist_ok=True)
    for path, name in staged.files:
        os.replace(path, target / name)
    return target / staged.files[0][1]
