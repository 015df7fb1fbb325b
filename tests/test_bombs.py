"""Archive and XML bombs (issue 8, items 1 and 2), built small in the test: each is refused with
its code, and while it is read — the splitter never holds what the bomb announces.

The same bombs at full size (400 MB header, a million folders, 13 million elements) are measured
in benchmarks/bombs.py: time and peak RSS, not asserted here.
"""

from __future__ import annotations

import io
import tarfile

import pytest
from lxml import etree

from edi.validate.flowchecks import MAX_TAR_DIRECTORIES, MAX_TAR_HEADER_BYTES
from tests import bombs
from tests.helpers import assert_irrecevable, flow_name, generated, make_platform, tar_gz


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bomb-samples")
    return {
        "cpp": generated(folder, "FSO1110A", 2, seed=31).path.read_bytes(),
        "ubl": generated(folder, "FSO1100A", 1, seed=32).path.read_bytes(),
        "ubl4": generated(folder, "FSO1100A", 4, seed=33).path.read_bytes(),
    }


def ingest(platform, name, data):
    return platform.ingest(platform.file(name, data))


def built(builder, *args) -> bytes:
    out = io.BytesIO()
    builder(out, *args)
    return out.getvalue()


# ------------------------------------------------------------------ tar header bombs


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME], ids=["pax", "gnu-longname"])
def test_huge_tar_header_is_refused_before_it_is_read(tmp_path, samples, kind):
    data = built(bombs.header_bomb, kind, 5_000_000, "facture.xml", samples["ubl"])
    assert len(data) < 50_000  # what the header claims is 100 times what was uploaded
    platform = make_platform(tmp_path)
    flow = ingest(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    lines = assert_irrecevable(platform, flow, "IRR_EXTRAC", data)
    assert str(MAX_TAR_HEADER_BYTES) in lines[0]["LibelleErreur"]


def test_ordinary_pax_header_is_read(tmp_path, samples):
    """A long member name (PAX `path`) is an ordinary archive, not a bomb."""
    info = tarfile.TarInfo("f" * 200 + ".xml")
    data = tar_gz([(info, samples["ubl"])])
    platform = make_platform(tmp_path)
    flow = ingest(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    assert (flow.state, flow.accepted_count) == ("IN_INTEGRE", 1), flow.error_code


def test_many_directory_entries_are_refused(tmp_path, samples):
    data = built(bombs.directory_bomb, MAX_TAR_DIRECTORIES + 1, "facture.xml", samples["ubl"])
    platform = make_platform(tmp_path)
    flow = ingest(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    lines = assert_irrecevable(platform, flow, "IRR_EXTRAC", data)
    assert "dossiers" in lines[0]["LibelleErreur"]


def test_members_over_max_archive_members_are_refused(tmp_path, samples):
    platform = make_platform(tmp_path, limits={"max_archive_members": 3})
    flow = ingest(platform, flow_name("FSO1100A", ext="tar.gz"), samples["ubl4"])
    lines = assert_irrecevable(platform, flow, "IRR_EXTRAC", samples["ubl4"])
    assert "plus de 3 membres" in lines[0]["LibelleErreur"]


def test_decompressed_bytes_are_counted_while_reading(tmp_path, samples):
    """Headers under their own limit still count: the decompressed position is checked as the
    stream is read, not only from the sizes members declare."""
    data = built(bombs.header_bomb, tarfile.XHDTYPE, 60_000, "facture.xml", samples["ubl"])
    platform = make_platform(tmp_path, limits={"max_flow_bytes": 40_000})
    flow = ingest(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    assert_irrecevable(platform, flow, "IRR_TAILLE", data)


# ------------------------------------------------------------------ XML element bombs


@pytest.mark.parametrize("marker", [b"</CPPFactureMixte>", b"</CPPFactures>", b"<CPPFactures"],
                         ids=["after-invoices", "after-last-invoice", "before-invoices"])
def test_cpp_content_outside_the_envelope_shape_is_refused(tmp_path, samples, marker):
    data = built(bombs.padded, samples["cpp"], marker, 200_000)
    platform = make_platform(tmp_path)
    flow = ingest(platform, flow_name("FSO1110A"), data)
    lines = assert_irrecevable(platform, flow, "IRR_SYNTAX", data)
    assert "élément x non autorisé" in lines[0]["LibelleErreur"]


def test_cpp_flow_over_max_file_bytes_is_refused(tmp_path, samples):
    platform = make_platform(tmp_path, limits={"max_file_bytes": len(samples["cpp"]) - 1})
    flow = ingest(platform, flow_name("FSO1110A"), samples["cpp"])
    assert_irrecevable(platform, flow, "IRR_TAILLE", samples["cpp"])


@pytest.mark.parametrize("interface, marker", [("FSO1100A", b"</Invoice>"),
                                               ("FSO1110A", b"</CPPFactureMixteUnitaire>")])
def test_invoice_over_max_invoice_elements_is_refused(tmp_path, samples, interface, marker):
    data = built(bombs.padded, samples["cpp" if interface == "FSO1110A" else "ubl"], marker, 5_000)
    platform = make_platform(tmp_path, limits={"max_invoice_elements": 2_000})
    flow = ingest(platform, flow_name(interface), data)
    lines = assert_irrecevable(platform, flow, "IRR_TAILLE", data)
    assert "plus de 2000 éléments" in lines[0]["LibelleErreur"]


def test_invoice_within_max_invoice_elements_is_accepted(tmp_path, samples):
    platform = make_platform(tmp_path, limits={"max_invoice_elements": 2_000})
    flow = ingest(platform, flow_name("FSO1110A"), samples["cpp"])
    assert (flow.state, flow.accepted_count) == ("IN_INTEGRE", 2), flow.error_code


def test_elements_are_counted_not_their_tags(tmp_path, samples):
    """A limit between the invoice's elements and its `<` (start and end tags) is not reached:
    the document is parsed as a stream and its elements counted exactly."""
    elements = sum(1 for _ in etree.fromstring(samples["ubl"]).iter())
    assert samples["ubl"].count(b"<") > elements + 10
    platform = make_platform(tmp_path, limits={"max_invoice_elements": elements + 10})
    flow = ingest(platform, flow_name("FSO1100A"), samples["ubl"])
    assert (flow.state, flow.accepted_count) == ("IN_INTEGRE", 1), flow.error_code


def test_sparse_member_is_refused_before_its_map_is_read(tmp_path, samples):
    """A GNU sparse member's map runs over as many blocks as it likes: refused at its header."""
    info = tarfile.TarInfo("facture.xml")
    info.type = tarfile.GNUTYPE_SPARSE
    data = tar_gz([(info, samples["ubl"])])
    platform = make_platform(tmp_path)
    flow = ingest(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    lines = assert_irrecevable(platform, flow, "IRR_EXTRAC", data)
    assert "sparse" in lines[0]["LibelleErreur"]


def test_global_pax_headers_count_for_every_later_member(tmp_path, samples):
    """tarfile keeps every global PAX header for the rest of the archive: two of 40 KB, each in
    front of its own member, are over the bound together."""
    data = built(bombs.header_bomb, tarfile.XGLTYPE, 40_000, "facture.xml", samples["ubl"], 2)
    platform = make_platform(tmp_path)
    flow = ingest(platform, flow_name("FSO1100A", ext="tar.gz"), data)
    assert_irrecevable(platform, flow, "IRR_EXTRAC", data)
