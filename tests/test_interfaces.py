"""The interface table is the one source of what an interface and a syntax are, and it sits in
the lower layer: every stage reads it, it reads no stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from lxml import etree

from edi import interfaces, partners
from edi.invoice import syntax_of
from edi.validate import flowchecks, schematron, xsd
from edi.validate.flowchecks import FlowRejected

EDI = Path(interfaces.__file__).parent
STAGES = ("ingest", "validate", "route", "reports")
# what each stage may import besides the lower layer (design: ingest -> validate -> route -> reports)
ALLOWED = {"ingest": STAGES, "validate": STAGES[1:], "route": STAGES[2:], "reports": STAGES[3:]}
LOWER = ["config.py", "db", "log.py", "spool.py", "finding.py", "interfaces.py"]


def _imported_stages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "edi" and len(parts) > 1 and parts[1] in STAGES:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("entry", LOWER)
def test_lower_layer_imports_no_stage(entry):
    files = sorted((EDI / entry).rglob("*.py")) if (EDI / entry).is_dir() else [EDI / entry]
    assert {str(f.relative_to(EDI)): _imported_stages(f) for f in files if _imported_stages(f)} == {}


@pytest.mark.parametrize("stage", STAGES)
def test_stages_import_one_way(stage):
    wrong = {str(f.relative_to(EDI)): sorted(_imported_stages(f) - set(ALLOWED[stage]) - {stage})
             for f in sorted((EDI / stage).rglob("*.py"))}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_every_interface_is_known_by_every_stage():
    assert partners.INTERFACES == tuple(interfaces.INTERFACES)
    for code, interface in interfaces.INTERFACES.items():
        syntax = interface.syntax
        assert interfaces.SYNTAXES[syntax.name] is syntax
        for root in syntax.invoice_roots:
            assert syntax_of(etree.Element(root)) == syntax.name  # extraction reads it
            assert root in xsd.ROOT_KINDS  # and the XSD registry checks it
        assert syntax.xsd_kind in xsd.KINDS
        for name in syntax.rule_sets:
            assert name in schematron.RULESETS
        name = flowchecks.parse_name(f"{code}_DEMO_{'A' * 25}.{interface.extensions[0]}")
        assert name.interface == code


def test_extension_not_allowed_for_the_interface_is_irr_type():
    with pytest.raises(FlowRejected) as refused:
        flowchecks.parse_name(f"FSO1110A_DEMO_{'A' * 25}.tar.gz")
    assert refused.value.finding.code == "IRR_TYPE"
    assert "un flux FSO1110A est un fichier .xml" in refused.value.finding.message
