"""A flow deposited over HTTP (`POST /api/v1/flows`): a third transport into the same intake.

The checks a transport can make before the bytes are taken run here and refuse at once with the
flow code (name `IRR_NOM_F`/`IRR_TYPE`/`IRR_CODE_INTER`, sender `IRR_CODE_APP`, `IRR_VIDE`,
`IRR_TAILLE` while the bytes arrive, `IRR_UNCITE` for a FLOWID already received). The bytes are
written under a hidden staging folder of `spool/work/` (never taken by a scan), then handed to
`intake.take`, exactly as the spool and SFTP do: claimed by rename, hashed, archived, recorded,
and processed by `edi serve`'s workers with the same checks and reports as any other flow.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Iterator

from sqlalchemy import or_, select

from edi import db, log
from edi.db.models import Flow, Partner
from edi.ingest import intake
from edi.spool import Spool
from edi.interfaces import INTERFACES
from edi.validate.flowchecks import MESSAGES, FlowRejected, check_sender, parse_name
from edi.web.users import User

LOG = log.get("edi.web.upload")
_HTTP_STATUS = {"IRR_CODE_APP": 403, "IRR_UNCITE": 409, "IRR_TAILLE": 413}


class UploadRefused(Exception):
    def __init__(self, code: str, detail: str = ""):
        self.code = code
        self.status = _HTTP_STATUS.get(code, 400)
        self.message = MESSAGES[code] + (f" : {detail}" if detail else "")
        super().__init__(self.message)


def deposit(cfg, user: User, filename: str, chunks: Iterable[bytes]) -> Flow:
    """Check, stage and take one uploaded flow; returns its Flow row (state RECU)."""
    try:
        name = parse_name(filename)
        with db.session(cfg.database_url) as s:
            partner = s.get(Partner, name.app)
        check_sender(name, None if user.is_ops else user.partner, partner)
    except FlowRejected as exc:
        raise UploadRefused(exc.finding.code, str(exc.finding.value)) from None
    if _already_received(cfg.database_url, name.app, name.flow_ref):
        raise UploadRefused("IRR_UNCITE", name.flow_ref)
    spool = Spool(cfg.spool_root)
    staging = spool.work / f".upload-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        path = staging / filename
        size = write(path, chunks, cfg.max_flow_bytes,
                     UploadRefused("IRR_TAILLE", f"plus de {cfg.max_flow_bytes} octets"))
        if size == 0:
            raise UploadRefused("IRR_VIDE")
        flow = intake.take(cfg.database_url, spool, path, name.app, move=True, origin=f"api:{user.login}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    LOG.info("flow_uploaded", flow=flow.id, app=name.app, file=filename, bytes=size, user=user.login)
    return flow


def _already_received(url: str, app: str, flow_ref: str) -> bool:
    """The FLOWID was received from this sender: processed (its key) or still waiting (its name,
    under any interface or extension: a FLOWID is unique per sender)."""
    names = [f"{interface}_{app}_{flow_ref}.{ext}" for interface in INTERFACES for ext in ("xml", "tar.gz")]
    with db.session(url) as s:
        return s.execute(select(Flow.id).where(or_(
            Flow.flow_key == f"{app}/{flow_ref}", (Flow.app == app) & Flow.filename.in_(names)))).first() is not None


CHUNK = 1 << 20  # an upload is read and written by pieces of this many bytes


def chunks(fh) -> Iterator[bytes]:
    """An uploaded file's bytes, read as `write` takes them (a flow, a piece)."""
    while data := fh.read(CHUNK):
        yield data


def write(path, chunks: Iterable[bytes], limit: int, too_big: Exception) -> int:
    """Write uploaded bytes as they arrive (never all in memory); past `limit` bytes, stop and
    raise `too_big` (the caller's own refusal). Returns the size written, synced to disk."""
    size = 0
    with open(path, "wb") as fh:
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise too_big
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    return size
