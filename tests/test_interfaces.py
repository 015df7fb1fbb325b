"""The interface table is the one source of what an interface and a syntax are, and it sits in
the lower layer: every stage reads it, it reads no stage (the import direction itself is
tests/test_layers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from edi import interfaces, partners
from edi.invoice import syntax_of
from edi.validate import flowchecks, schematron, xsd
from edi.validate.flowchecks import FlowRejected

EDI = Path(interfaces.__file__).parent


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
