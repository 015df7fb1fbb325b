"""AIFE's official schemas (schemas/aife/) applied to what the tests produce.

Used by tests/conftest.py (automatic checks of every test) and by tests that assert on it.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lxml import etree

from edi.gen import GeneratedFlow

AIFE = Path(__file__).resolve().parents[1] / "schemas" / "aife"
#: Root element of a file a partner finds in its `out/` -> the official schema it follows.
OUT_SCHEMAS: dict[str, str] = {
    "CPPStatut": "CPPStatutPivot_V1_19.xsd",
    "CPPFacturePivot": "CPPFacturePivot_V2_01.xsd",
}
FLOW_SCHEMA = "CPPFactureMixte_V1.17.xsd"
_PARSER = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False, huge_tree=True)


@functools.cache
def official(name: str) -> etree.XMLSchema:
    """An official AIFE schema from `schemas/aife/`, compiled once per test session."""
    return etree.XMLSchema(etree.parse(str(AIFE / name), _PARSER))


def out_file_problem(path: Path) -> str | None:
    """Why a file in a partner's `out/` breaks its official schema, None when it is valid."""
    try:
        root = etree.parse(str(path), _PARSER).getroot()
    except etree.XMLSyntaxError as error:
        return f"{path}: XML illisible ({error})"
    name = OUT_SCHEMAS.get(root.tag if isinstance(root.tag, str) else "")
    if name is None:
        return f"{path}: racine {root.tag!r} sans schéma officiel (attendu : {', '.join(OUT_SCHEMAS)})"
    schema = official(name)
    if schema.validate(root):
        return None
    errors = "; ".join(f"ligne {e.line} : {e.message}" for e in list(schema.error_log)[:5])
    return f"{path}: invalide selon {name} : {errors}"


class OutFiles:
    """Files in partners' `out/` folders already checked, with the (size, mtime) seen."""

    def __init__(self) -> None:
        self.seen: dict[Path, tuple[int, int]] = {}

    def problems(self, base: Path) -> list[str]:
        """Why each new or changed file under `base` breaks its schema (empty when all are valid)."""
        return [problem for path in self._new(base) if (problem := out_file_problem(path))]

    def leave(self, base: Path) -> None:
        """Take the files under `base` as seen without checking them (stand-in bytes)."""
        for _ in self._new(base):
            pass

    def _new(self, base: Path):
        for path in sorted(base.glob("**/partners/*/out/*.xml")):
            if path.name.startswith(".") or not path.is_file():
                continue
            stat = path.stat()
            mark = (stat.st_size, stat.st_mtime_ns)
            if self.seen.get(path) != mark:
                self.seen[path] = mark
                yield path


def check_generated_flow(flow: GeneratedFlow) -> None:
    """A generated CPP flow follows CPPFactureMixte V1.17 except where an XSD error was asked for."""
    if flow.interface != "FSO1110A":
        return
    schema = official(FLOW_SCHEMA)
    tree = etree.parse(str(flow.path), _PARSER)
    units = tree.getroot().findall("CPPFactures/CPPFactureMixteUnitaire")
    intended = {seq for seq, invoice in enumerate(flow.invoices, start=1) if invoice.error == "xsd"}
    refused = {int(unit.get("NumOrdre")) for unit in units if not schema.validate(unit)}
    assert refused == intended, (
        f"{flow.path.name}: factures refusées par {FLOW_SCHEMA} {sorted(refused)}, "
        f"erreurs xsd demandées {sorted(intended)} ; {schema.error_log}"
    )
    for unit in units:
        if int(unit.get("NumOrdre")) in intended:
            unit.getparent().remove(unit)
    rest = tree if len(units) > len(intended) else tree.getroot().find("Enveloppe")
    assert schema.validate(rest), f"{flow.path.name}: invalide selon {FLOW_SCHEMA} : {schema.error_log}"
