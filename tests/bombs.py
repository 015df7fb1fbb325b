"""Builders of archive and XML bombs, written as streams (a 400 MB header never sits in memory).

Shared by tests/test_bombs.py (small sizes) and benchmarks/bombs.py (the sizes of issue 8).
"""

from __future__ import annotations

import gzip
import tarfile
from typing import BinaryIO

BLOCK = 512
_CHUNK = 1 << 20


def _pad(gz, size: int) -> None:
    gz.write(b"\0" * (-size % BLOCK))


def _member(gz, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    gz.write(info.tobuf(tarfile.USTAR_FORMAT))
    gz.write(data)
    _pad(gz, len(data))


def _repeat(gz, unit: bytes, count: int) -> None:
    chunk = unit * max(1, _CHUNK // len(unit))
    per = len(chunk) // len(unit)
    while count >= per:
        gz.write(chunk)
        count -= per
    gz.write(unit * count)


def header_bomb(out: BinaryIO, kind: bytes, size: int, member: str, data: bytes, count: int = 1) -> None:
    """A .tar.gz of `count` members, each preceded by a PAX (`tarfile.XHDTYPE`, or global
    `XGLTYPE`) or GNU long-name (`tarfile.GNUTYPE_LONGNAME`) header of `size` bytes."""
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as gz:
        for n in range(count):
            header = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "././@PaxHeader")
            header.type, header.size = kind, size
            gz.write(header.tobuf(tarfile.USTAR_FORMAT))
            if kind == tarfile.GNUTYPE_LONGNAME:
                _repeat(gz, b"a", size - 1)
                gz.write(b"\0")
            else:  # one record "LEN comment<n>=VALUE\n", LEN counting the whole record
                prefix = f"{size} comment{n}=".encode()
                gz.write(prefix)
                _repeat(gz, b"x", size - len(prefix) - 1)
                gz.write(b"\n")
            _pad(gz, size)
            _member(gz, f"{n}-{member}", data)
        gz.write(b"\0" * 2 * BLOCK)


def directory_bomb(out: BinaryIO, count: int, member: str, data: bytes) -> None:
    """A .tar.gz of `count` directory entries, then one member."""
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as gz:
        for n in range(count):
            info = tarfile.TarInfo(f"d{n:07d}/")
            info.type = tarfile.DIRTYPE
            gz.write(info.tobuf(tarfile.USTAR_FORMAT))
        _member(gz, member, data)
        gz.write(b"\0" * 2 * BLOCK)


def padded(out: BinaryIO, document: bytes, marker: bytes, count: int, element: bytes = b"<x/>") -> None:
    """`document` with `count` copies of `element` inserted just before `marker` (its first
    occurrence): e.g. after `</CPPFactures>` with marker `</CPPFactureMixte>`."""
    at = document.index(marker)
    out.write(document[:at])
    _repeat(out, element, count)
    out.write(document[at:])
