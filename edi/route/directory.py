"""The directory of public structures (annuaire Chorus Pro): import from CSV, lookup for routing.

Two files feed it (reference §4.1, design "edi directory import"):

- the structures file, the Chorus Pro public CSV export: `;`-separated, one header line,
  21 columns (`STRUCTURE_COLUMNS`), one line per structure, no services;
- an optional services file, header `Identifiant;CodeService;NomService;GestionEGMT;ServiceActif`.

An import replaces the whole directory in one transaction, so routing never sees half a
directory and a bad file changes nothing. Lookups (`Directory`) are memoised per instance: the
pipeline makes one per flow, so a re-import is picked up by the next flow, never mid-flow.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection

from edi.db import engine_for
from edi.db.models import Service, Structure

STRUCTURE_COLUMNS = (
    "TypeIdentifiant", "Identifiant", "RaisonSociale", "EmetteurEdi", "RecepteurEdi",
    "GestionStatutMiseEnPaiement", "GestionEngagement", "GestionService",
    "GestionServiceEngagement", "EstMOA", "EstMOAUniquement", "StructureActive", "Adresse",
    "ComplementAdresse1", "ComplementAdresse2", "CodePostal", "Ville", "NumTelephone", "Courriel",
    "CodePays", "LibellePays",
)
SERVICE_COLUMNS = ("Identifiant", "CodeService", "NomService", "GestionEGMT", "ServiceActif")

# CSV flag column -> StructureInfo attribute. Flags marked optional in the AIFE XSD
# (CPP_FAR00037: EmetteurEdi?, RecepteurEdi?, EstMOAUniquement?) read an empty cell as false;
# the others must hold a value.
_STRUCTURE_FLAGS = {
    "EmetteurEdi": "edi_sender",
    "RecepteurEdi": "edi_receiver",
    "GestionStatutMiseEnPaiement": "payment_status",
    "GestionEngagement": "ej_required",
    "GestionService": "service_required",
    "GestionServiceEngagement": "service_or_ej",
    "EstMOA": "is_moa",
    "EstMOAUniquement": "moa_only",
    "StructureActive": "active",
}
_OPTIONAL_FLAGS = frozenset({"EmetteurEdi", "RecepteurEdi", "EstMOAUniquement"})

_TRUE = frozenset({"true", "1", "oui"})
_FALSE = frozenset({"false", "0", "non"})

SIRET_TYPE = "1"
SIRET_LENGTH = 14
CODE_SERVICE_MAX = 100  # reference §1.3 / §3.2
_INSERT_CHUNK = 5_000


class DirectoryFileError(ValueError):
    """A directory file cannot be imported; says which file, which line and what is wrong."""

    def __init__(self, path: str | Path, line_no: int, message: str):
        self.path = str(path)
        self.line_no = line_no
        self.message = message
        super().__init__(f"{self.path}, ligne {line_no} : {message}")


@dataclass(frozen=True, slots=True)
class StructureInfo:
    """A public structure and the flags that drive routing (reference §4.1)."""

    siret: str
    id_type: str = SIRET_TYPE
    name: str = ""
    edi_sender: bool = False
    edi_receiver: bool = False
    payment_status: bool = False  # GestionStatutMiseEnPaiement
    ej_required: bool = False  # GestionEngagement
    service_required: bool = False  # GestionService
    service_or_ej: bool = False  # GestionServiceEngagement
    is_moa: bool = False  # EstMOA
    moa_only: bool = False  # EstMOAUniquement
    active: bool = True  # StructureActive
    address: str = ""
    postal_code: str = ""
    city: str = ""
    country: str = ""
    # Read from the CSV but not stored: table `structure` has no column for them yet.
    # They are stored as soon as columns with these names exist (see `_STRUCTURE_FIELDS`).
    address_complement1: str = ""
    address_complement2: str = ""
    phone: str = ""
    email: str = ""
    country_name: str = ""


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """A service (code service) of a structure."""

    siret: str
    code: str
    name: str = ""
    ej_required: bool = False  # GestionEGMT
    active: bool = True  # ServiceActif


@dataclass(frozen=True, slots=True)
class ImportStats:
    structures: int
    services: int  # services imported from the services file
    services_kept: int  # existing services kept (no services file given)
    padded_ids: int  # identifiers left-padded with zeros (lost by a spreadsheet)
    encoding: str  # encoding the structures file was read with
    seconds: float


def parse_bool(text: str) -> bool:
    """Read a directory flag: true/false, 1/0, oui/non, in any case, surrounding blanks ignored.

    >>> parse_bool("OUI"), parse_bool(" 0 "), parse_bool("True")
    (True, False, True)
    """
    word = (text or "").strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"valeur booléenne invalide {text!r} (attendu true/false, 1/0 ou oui/non)")


def normalise_siret(raw: str) -> tuple[str, bool]:
    """Return (14-digit SIRET, padded?) from a directory cell, or raise ValueError.

    A spreadsheet (Excel) reads the Identifiant column as a number and drops leading zeros,
    and may write "123.0": such values are left-padded back to 14 digits. Scientific notation
    ("1,10002E+13") has lost digits for good and is refused. No checksum test: the real
    directory holds identifiers that fail it (reference §3.1), and presence there is what counts.
    """
    value = (raw or "").strip()
    if not value:
        raise ValueError("identifiant vide")
    if "e+" in value.lower():
        raise ValueError(
            f"identifiant {value!r} en notation scientifique (fichier passé par un tableur ?) : "
            "chiffres perdus, réexporter la colonne en texte"
        )
    if value.endswith((".0", ",0")):
        value = value[:-2]
    if not value.isdigit() or not value.isascii():
        raise ValueError(f"identifiant {value!r} : SIRET attendu (14 chiffres)")
    if len(value) > SIRET_LENGTH:
        raise ValueError(f"identifiant {value!r} : plus de 14 chiffres")
    return value.zfill(SIRET_LENGTH), len(value) < SIRET_LENGTH


# --- reading the files -------------------------------------------------------------------


def _decode(path: Path) -> tuple[str, str]:
    """Decode a directory file: UTF-8 (with or without BOM) first, then cp1252.

    The Chorus Pro export is expected in UTF-8, but a file saved again by a spreadsheet on
    Windows is usually cp1252; a byte sequence invalid in UTF-8 makes us read the whole file
    as cp1252 (which cannot be told apart from latin-1 text by content alone). Bytes undefined
    in cp1252 too are an error naming the line.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError as exc:
        line_no = data.count(b"\n", 0, exc.start) + 1
        raise DirectoryFileError(
            path, line_no, f"encodage illisible (ni UTF-8 ni cp1252), octet {data[exc.start]:#04x}"
        ) from None


def _records(path: Path, text: str, expected: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, cells) after checking the header; blank lines are skipped."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";", quotechar='"')
    try:
        header = next(reader)
    except StopIteration:
        raise DirectoryFileError(path, 1, "fichier vide (ligne d'en-tête attendue)") from None
    except csv.Error as exc:
        raise DirectoryFileError(path, 1, f"ligne CSV illisible : {exc}") from None
    found = [h.strip().lower() for h in header]
    while found and found[-1] == "" and len(found) > len(expected):
        found.pop()
    if found != [c.lower() for c in expected]:
        for i, name in enumerate(expected):
            got = header[i].strip() if i < len(header) else "(absente)"
            if i >= len(found) or found[i] != name.lower():
                raise DirectoryFileError(
                    path, 1,
                    f"en-tête inattendu : colonne {i + 1} = {got!r}, attendu {name!r} "
                    f"({len(expected)} colonnes : {';'.join(expected)})",
                )
        raise DirectoryFileError(
            path, 1, f"en-tête inattendu : {len(header)} colonnes, {len(expected)} attendues"
        )
    width = len(expected)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DirectoryFileError(path, reader.line_num, f"ligne CSV illisible : {exc}") from None
        if not cells or all(not c.strip() for c in cells):
            continue
        # a trailing ";" (extra empty cells) is tolerated, anything else is not
        while len(cells) > width and not cells[-1].strip():
            cells.pop()
        if len(cells) != width:
            raise DirectoryFileError(
                path, reader.line_num, f"{len(cells)} colonnes au lieu de {width}"
            )
        for i, cell in enumerate(cells):
            if "\x00" in cell:  # SQLite would store it, PostgreSQL refuses it: refused alike, here
                raise DirectoryFileError(
                    path, reader.line_num, f"colonne {expected[i]} : caractère NUL (octet 0x00) interdit"
                )
        yield reader.line_num, [c.strip() for c in cells]


def _flag(path: Path, line_no: int, column: str, text: str, optional: bool = False) -> bool:
    if optional and not text:
        return False
    try:
        return parse_bool(text)
    except ValueError as exc:
        raise DirectoryFileError(path, line_no, f"colonne {column} : {exc}") from None


def _read_structures(path: Path) -> tuple[list[StructureInfo], int, str]:
    text, encoding = _decode(path)
    out: list[StructureInfo] = []
    seen: dict[str, int] = {}
    padded = 0
    for line_no, cells in _records(path, text, STRUCTURE_COLUMNS):
        row = dict(zip(STRUCTURE_COLUMNS, cells))
        id_type = row["TypeIdentifiant"]
        if not id_type:
            raise DirectoryFileError(path, line_no, "colonne TypeIdentifiant vide")
        if id_type == SIRET_TYPE:
            try:
                siret, was_padded = normalise_siret(row["Identifiant"])
            except ValueError as exc:
                raise DirectoryFileError(path, line_no, f"colonne Identifiant : {exc}") from None
            padded += was_padded
        else:
            siret = row["Identifiant"]
            if not siret or len(siret) > SIRET_LENGTH:
                raise DirectoryFileError(
                    path, line_no,
                    f"colonne Identifiant : {siret!r} vide ou de plus de 14 caractères "
                    f"(TypeIdentifiant {id_type})",
                )
        if siret in seen:
            raise DirectoryFileError(
                path, line_no, f"identifiant {siret} en double (déjà ligne {seen[siret]})"
            )
        seen[siret] = line_no
        flags = {
            attr: _flag(path, line_no, col, row[col], col in _OPTIONAL_FLAGS)
            for col, attr in _STRUCTURE_FLAGS.items()
        }
        out.append(
            StructureInfo(
                siret=siret,
                id_type=id_type,
                name=row["RaisonSociale"],
                address=row["Adresse"],
                postal_code=row["CodePostal"],
                city=row["Ville"],
                country=row["CodePays"],
                address_complement1=row["ComplementAdresse1"],
                address_complement2=row["ComplementAdresse2"],
                phone=row["NumTelephone"],
                email=row["Courriel"],
                country_name=row["LibellePays"],
                **flags,
            )
        )
    return out, padded, encoding


def read_structures(path: str | Path) -> list[StructureInfo]:
    """Parse the Chorus Pro structures CSV export (21 columns, reference §4.1).

    Encoding: UTF-8 with or without BOM; failing that, cp1252 (a file re-saved by a
    spreadsheet on Windows). Identifiant stays text; for TypeIdentifiant 1 (SIRET) it must be
    14 digits, and a numeric value that lost its leading zeros in a spreadsheet is left-padded
    (`normalise_siret`). Raises `DirectoryFileError` on the first bad line.
    """
    return _read_structures(Path(path))[0]


def read_services(path: str | Path, known_sirets: Collection[str] | None = None) -> list[ServiceInfo]:
    """Parse the services file (`Identifiant;CodeService;NomService;GestionEGMT;ServiceActif`).

    With `known_sirets` (the SIRETs of the structures file), a service of another SIRET is an
    error on its line. A code service repeated under one SIRET is an error too.
    """
    path = Path(path)
    text, _ = _decode(path)
    out: list[ServiceInfo] = []
    seen: dict[tuple[str, str], int] = {}
    for line_no, cells in _records(path, text, SERVICE_COLUMNS):
        row = dict(zip(SERVICE_COLUMNS, cells))
        try:
            siret, _ = normalise_siret(row["Identifiant"])
        except ValueError as exc:
            raise DirectoryFileError(path, line_no, f"colonne Identifiant : {exc}") from None
        if known_sirets is not None and siret not in known_sirets:
            raise DirectoryFileError(
                path, line_no, f"SIRET {siret} absent du fichier des structures"
            )
        code = row["CodeService"]
        if not code:
            raise DirectoryFileError(path, line_no, "colonne CodeService vide")
        if len(code) > CODE_SERVICE_MAX:
            raise DirectoryFileError(
                path, line_no, f"colonne CodeService : plus de {CODE_SERVICE_MAX} caractères"
            )
        key = (siret, code)
        if key in seen:
            raise DirectoryFileError(
                path, line_no, f"service {code} du SIRET {siret} en double (déjà ligne {seen[key]})"
            )
        seen[key] = line_no
        out.append(
            ServiceInfo(
                siret=siret,
                code=code,
                name=row["NomService"],
                ej_required=_flag(path, line_no, "GestionEGMT", row["GestionEGMT"]),
                active=_flag(path, line_no, "ServiceActif", row["ServiceActif"]),
            )
        )
    return out


# --- storing ---------------------------------------------------------------------------

_STRUCTURE_COLS = frozenset(Structure.__table__.columns.keys())
_SERVICE_COLS = frozenset(Service.__table__.columns.keys()) - {"id"}


def _stored(cls, columns: frozenset[str]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.name in columns)


# StructureInfo/ServiceInfo fields that have a column (the others are read but not stored)
_STRUCTURE_FIELDS = _stored(StructureInfo, _STRUCTURE_COLS)
_SERVICE_FIELDS = _stored(ServiceInfo, _SERVICE_COLS)


def _rows(items: Iterable, names: tuple[str, ...]) -> list[dict]:
    # getattr over precomputed names, not dataclasses.asdict (which deep-copies: much slower)
    return [{n: getattr(item, n) for n in names} for item in items]


def _chunks(items: list, size: int = _INSERT_CHUNK) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _bulk_insert(conn: Connection, table, rows: list[dict]) -> None:
    for chunk in _chunks(rows):
        conn.execute(insert(table), chunk)


def replace_directory(
    url: str,
    structures: list[StructureInfo],
    services: list[ServiceInfo] | None,
) -> int:
    """Replace the stored directory in one transaction; return the number of services kept.

    `services=None` keeps the stored services of the structures still present (the weekly
    Chorus Pro export has no services) and drops those of structures that are gone. Any
    database error rolls everything back.
    """
    structure_t = Structure.__table__
    service_t = Service.__table__
    with engine_for(url).begin() as conn:
        kept: list[dict] = []
        if services is None:
            present = {s.siret for s in structures}
            kept = [
                dict(r._mapping)
                for r in conn.execute(select(*[service_t.c[c] for c in _SERVICE_FIELDS]))
                if r.siret in present
            ]
        conn.execute(delete(service_t))
        conn.execute(delete(structure_t))
        _bulk_insert(conn, structure_t, _rows(structures, _STRUCTURE_FIELDS))
        rows = kept if services is None else _rows(services, _SERVICE_FIELDS)
        _bulk_insert(conn, service_t, rows)
    return len(kept)


def import_directory(
    url: str, structures_path: str | Path, services_path: str | Path | None = None,
    allow_empty: bool = False,
) -> ImportStats:
    """Read both files completely, then replace the directory (see `replace_directory`).

    Files are parsed before the database is touched, so a bad line changes nothing. A
    structures file without a single structure (a truncated export, a header alone) would empty
    the directory and reject every invoice: refused unless `allow_empty`.
    """
    start = time.perf_counter()
    structures, padded, encoding = _read_structures(Path(structures_path))
    if not structures and not allow_empty:
        with engine_for(url).connect() as conn:
            present = conn.execute(select(func.count()).select_from(Structure.__table__)).scalar_one()
        if present:
            raise DirectoryFileError(
                structures_path, 1,
                f"aucune structure dans le fichier : l'import viderait l'annuaire ({present} structures) ; "
                "option --allow-empty pour le vider volontairement",
            )
    services = None
    if services_path is not None:
        services = read_services(services_path, {s.siret for s in structures})
    kept = replace_directory(url, structures, services)
    return ImportStats(
        structures=len(structures),
        services=len(services or ()),
        services_kept=kept,
        padded_ids=padded,
        encoding=encoding,
        seconds=round(time.perf_counter() - start, 3),
    )


# --- lookup ----------------------------------------------------------------------------



def _structure_from(row) -> StructureInfo:
    return StructureInfo(**{k: row._mapping[k] for k in _STRUCTURE_FIELDS})


def _service_from(row) -> ServiceInfo:
    return ServiceInfo(**{k: row._mapping[k] for k in _SERVICE_FIELDS})


class Directory:
    """Directory lookups for routing, memoised for the life of the instance (one flow)."""

    def __init__(self, url: str):
        self._engine = engine_for(url)
        self._structures: dict[str, StructureInfo | None] = {}
        self._services: dict[tuple[str, str], ServiceInfo | None] = {}

    def structure(self, siret: str) -> StructureInfo | None:
        siret = (siret or "").strip()
        if siret not in self._structures:
            t = Structure.__table__
            stmt = select(*[t.c[k] for k in _STRUCTURE_FIELDS]).where(t.c.siret == siret)
            with self._engine.connect() as conn:
                row = conn.execute(stmt).first()
            self._structures[siret] = _structure_from(row) if row else None
        return self._structures[siret]

    def service(self, siret: str, code: str) -> ServiceInfo | None:
        key = ((siret or "").strip(), (code or "").strip())
        if key not in self._services:
            t = Service.__table__
            stmt = select(*[t.c[k] for k in _SERVICE_FIELDS]).where(
                t.c.siret == key[0], t.c.code == key[1]
            )
            with self._engine.connect() as conn:
                row = conn.execute(stmt).first()
            self._services[key] = _service_from(row) if row else None
        return self._services[key]


def show(url: str, siret: str) -> tuple[StructureInfo, list[ServiceInfo]] | None:
    """A structure and its services (sorted by code), for `edi directory show SIRET`."""
    siret = (siret or "").strip()
    structure = Directory(url).structure(siret)
    if structure is None:
        return None
    t = Service.__table__
    stmt = select(*[t.c[k] for k in _SERVICE_FIELDS]).where(t.c.siret == siret).order_by(t.c.code)
    with engine_for(url).connect() as conn:
        services = [_service_from(r) for r in conn.execute(stmt)]
    return structure, services
