"""Hostile and garbage input: always a coded refusal, never an expansion, a file read or a request.

Each case is ingested through the real path. Checked every time: the flow is IN_REJETE with the
expected IRR_* code in its report and in the logs, the original is archived byte for byte,
nothing is delivered, no byte of /etc/passwd nor of a local secret file is stored anywhere
(database, reports, recipients), and a local HTTP server the documents point at is never called.
"""

from __future__ import annotations

import gzip
import http.server
import io
import itertools
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edi.db.models import TERMINAL_STATES
from tests.helpers import (
    assert_irrecevable,
    error_lines,
    flow_name,
    flow_status,
    generated,
    make_platform,
    tar_gz,
    validate_report,
)

PASSWD = Path("/etc/passwd")
PASSWD_LINE = PASSWD.read_text(errors="replace").splitlines()[0] if PASSWD.exists() else "root:x:0:0"
SECRET = "SECRET-7f3a9c-NE-DOIT-JAMAIS-SORTIR"
UBL_NS = ('xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" '
          'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"')


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        self.requests.append(self.path)
        body = b'<!ENTITY exfil "EXFIL">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_server():
    """A local server the hostile documents point at: any request to it is a failure."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.requests
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile-samples")
    secret = folder / "secret.txt"
    secret.write_text(SECRET + "\n")
    return {
        "cpp": generated(folder, "FSO1110A", 1, seed=21).path.read_bytes(),
        "ubl": generated(folder, "FSO1100A", 1, seed=22).path.read_bytes(),
        "secret": secret,
    }


@pytest.fixture
def platform(tmp_path):
    return make_platform(tmp_path, limits={"max_flow_bytes": 50_000_000, "max_file_bytes": 20_000_000})


def ubl_with(samples, prolog: bytes = b"", in_note: bytes = b"") -> bytes:
    """The sample UBL invoice with a prolog inserted after the XML declaration and content put in
    a `cbc:Note` (an element the schema allows)."""
    decl, _, body = samples["ubl"].partition(b"?>")
    body = body.replace(b"<cbc:DocumentCurrencyCode>",
                        b"<cbc:Note>" + in_note + b"</cbc:Note><cbc:DocumentCurrencyCode>", 1)
    assert b"<cbc:Note>" in body
    return decl + b"?>" + prolog + body


def cpp_with(samples, prolog: bytes = b"", in_pj: bytes | None = None) -> bytes:
    decl, _, body = samples["cpp"].partition(b"?>")
    if in_pj is not None:
        start = body.index(b"<Contenu>") + len(b"<Contenu>")
        end = body.index(b"</Contenu>")
        body = body[:start] + in_pj + body[end:]
    return decl + b"?>" + prolog + body


def assert_nothing_leaked(platform, http_requests):
    stored = platform.database_text()
    files = [p.read_bytes() for p in platform.spool.root.glob("partners/*/out/*")] + [
        p.read_bytes() for p in platform.delivered()]
    for marker in (SECRET, PASSWD_LINE, "EXFIL"):
        assert marker not in stored
        assert not any(marker.encode() in data for data in files)
    assert http_requests == []


def refuse(platform, name, data, code, http_requests):
    flow = platform.ingest(platform.file(name, data))
    lines = assert_irrecevable(platform, flow, code, data)
    assert_nothing_leaked(platform, http_requests)
    return flow, lines


# ------------------------------------------------------------------ entities, DTDs, XInclude


BILLION_LAUGHS = b"""
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
"""


def entity_cases(samples, url):
    secret = samples["secret"].as_uri().encode()
    url = url.encode()
    return {
        "billion_laughs_ubl": ("FSO1100A", ubl_with(samples, BILLION_LAUGHS, b"&lol9;")),
        "billion_laughs_cpp": ("FSO1110A", cpp_with(samples, BILLION_LAUGHS.replace(b"lolz", b"CPPFactureMixte"))),
        "external_entity_passwd": ("FSO1100A", ubl_with(
            samples, b'<!DOCTYPE Invoice [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', b"&xxe;")),
        "external_entity_secret_cpp": ("FSO1110A", cpp_with(
            samples, b'<!DOCTYPE CPPFactureMixte [<!ENTITY xxe SYSTEM "' + secret + b'">]>', b"&xxe;")),
        "external_entity_http": ("FSO1100A", ubl_with(
            samples, b'<!DOCTYPE Invoice [<!ENTITY xxe SYSTEM "' + url + b'/entity">]>', b"&xxe;")),
        "external_dtd": ("FSO1100A", ubl_with(samples, b'<!DOCTYPE Invoice SYSTEM "' + url + b'/evil.dtd">')),
        "public_dtd": ("FSO1110A", cpp_with(
            samples, b'<!DOCTYPE CPPFactureMixte PUBLIC "-//EVIL//DTD" "' + url + b'/public.dtd">')),
        "parameter_entities": ("FSO1100A", ubl_with(
            samples, b'<!DOCTYPE Invoice [<!ENTITY % remote SYSTEM "' + url + b'/p.dtd"> %remote;'
                     b'<!ENTITY % file SYSTEM "file:///etc/passwd">]>', b"&exfil;")),
        # a `<a` inside a comment must not end the prolog early and let the DOCTYPE through
        "doctype_behind_a_comment": ("FSO1100A", ubl_with(
            samples, b'<!-- <a --><!DOCTYPE Invoice [<!ENTITY xxe SYSTEM "' + secret + b'">]>', b"&xxe;")),
        "doctype_behind_a_pi": ("FSO1110A", cpp_with(
            samples, b'<?pi <a?><!DOCTYPE CPPFactureMixte [<!ENTITY xxe SYSTEM "' + secret + b'">]>', b"&xxe;")),
        "xinclude_ubl": ("FSO1100A", ubl_with(
            samples, in_note=b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" '
                             b'parse="text"/>')),
        "xinclude_cpp": ("FSO1110A", cpp_with(
            samples, in_pj=b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="' + secret
                           + b'" parse="text"/>')),
    }


CASES = ["billion_laughs_ubl", "billion_laughs_cpp", "external_entity_passwd", "external_entity_secret_cpp",
         "external_entity_http", "external_dtd", "public_dtd", "parameter_entities", "doctype_behind_a_comment",
         "doctype_behind_a_pi", "xinclude_ubl", "xinclude_cpp"]


@pytest.mark.parametrize("case", CASES)
def test_entities_dtds_and_xinclude_are_refused(platform, samples, http_server, case):
    url, requests = http_server
    interface, data = entity_cases(samples, url)[case]
    flow, lines = refuse(platform, flow_name(interface), data, "IRR_SYNTAX", requests)
    assert any(word in lines[0]["LibelleErreur"] for word in ("DTD", "XInclude")), lines


def test_hostile_member_of_an_archive_is_refused(platform, samples, http_server):
    url, requests = http_server
    _, evil = entity_cases(samples, url)["external_entity_passwd"]
    data = tar_gz([("1.xml", samples["ubl"]), ("2.xml", evil)])
    refuse(platform, flow_name("FSO1100A", ext="tar.gz"), data, "IRR_SYNTAX", requests)


# ------------------------------------------------------------------ sizes and depth


def nested(depth: int) -> bytes:
    return b"<a>" * depth + b"x" + b"</a>" * depth


@pytest.mark.parametrize("interface", ["FSO1100A", "FSO1110A"])
def test_deeply_nested_elements(platform, samples, http_server, interface):
    deep = nested(100_000)
    data = ubl_with(samples, in_note=deep) if interface == "FSO1100A" else cpp_with(samples, in_pj=deep)
    refuse(platform, flow_name(interface), data, "IRR_SYNTAX", http_server[1])


@pytest.mark.parametrize("interface", ["FSO1100A", "FSO1110A"])
def test_huge_text_node(platform, samples, http_server, interface):
    huge = b"QUFB" * 2_700_000  # 10.8 MB of base64 in one text node
    data = ubl_with(samples, in_note=huge) if interface == "FSO1100A" else cpp_with(samples, in_pj=huge)
    assert len(data) < platform.cfg.max_flow_bytes  # refused for the node, not for the file size
    refuse(platform, flow_name(interface), data, "IRR_SYNTAX", http_server[1])


def test_gzip_bomb_member_over_the_file_limit(tmp_path, samples, http_server):
    platform = make_platform(tmp_path, limits={"max_flow_bytes": 4_000_000, "max_file_bytes": 1_000_000})
    member = ubl_with(samples, in_note=b" " * 3_000_000)  # an invoice, 3 MB, compresses to a few KB
    data = tar_gz([("1.xml", member)])
    assert len(data) < 50_000
    refuse(platform, flow_name("FSO1100A", ext="tar.gz"), data, "IRR_TAILLE", http_server[1])


def test_gzip_bomb_members_over_the_flow_limit(tmp_path, samples, http_server):
    platform = make_platform(tmp_path, limits={"max_flow_bytes": 4_000_000, "max_file_bytes": 1_000_000})
    member = ubl_with(samples, in_note=b" " * 900_000)
    data = tar_gz([(f"{n}.xml", member) for n in range(6)])  # 5.4 MB unpacked, each under the file limit
    assert len(data) < 50_000
    refuse(platform, flow_name("FSO1100A", ext="tar.gz"), data, "IRR_TAILLE", http_server[1])


def test_gzip_bomb_after_the_archive_end(tmp_path, samples, http_server):
    """Padding after the tar end blocks still counts: the gzip stream is read to its end."""
    platform = make_platform(tmp_path, limits={"max_flow_bytes": 4_000_000, "max_file_bytes": 1_000_000})
    data = gzip.compress(gzip.decompress(tar_gz([("1.xml", samples["ubl"])])) + bytes(8_000_000))
    assert len(data) < 50_000
    refuse(platform, flow_name("FSO1100A", ext="tar.gz"), data, "IRR_TAILLE", http_server[1])


# ------------------------------------------------------------------ encodings


@pytest.mark.parametrize("case", ["latin1_declared", "utf16_bom", "utf16_no_bom", "utf16_declared_only",
                                  "invalid_utf8_ubl", "invalid_utf8_cpp", "ebcdic_declared"])
def test_wrong_encodings(platform, samples, http_server, case):
    text = samples["ubl"].decode("utf-8")
    data, interface = {
        "latin1_declared": (text.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode("latin-1", "replace"),
                            "FSO1100A"),
        "utf16_bom": (text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"), "FSO1100A"),
        "utf16_no_bom": (text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16-le"), "FSO1100A"),
        "utf16_declared_only": (text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-8"), "FSO1100A"),
        "invalid_utf8_ubl": (ubl_with(samples, in_note=b"caf\xe9 \xff\xfe"), "FSO1100A"),
        "invalid_utf8_cpp": (samples["cpp"].replace(b"<RaisonSociale>", b"<RaisonSociale>\xc3\x28", 1), "FSO1110A"),
        "ebcdic_declared": (samples["cpp"].replace(b'encoding="UTF-8"', b'encoding="IBM037"'), "FSO1110A"),
    }[case]
    refuse(platform, flow_name(interface), data, "IRR_SYNTAX", http_server[1])


# ------------------------------------------------------------------ garbage and hostile archives


def test_binary_garbage_as_xml(platform, http_server):
    data = bytes(range(256)) * 40
    refuse(platform, flow_name("FSO1110A"), data, "IRR_SYNTAX", http_server[1])


def test_binary_garbage_as_tar_gz(platform, http_server):
    data = bytes((i * 7919) % 251 for i in range(10_000))
    refuse(platform, flow_name("FSO1100A", ext="tar.gz"), data, "IRR_EXTRAC", http_server[1])


def test_zip_renamed_tar_gz(platform, samples, http_server):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("1.xml", samples["ubl"])
    refuse(platform, flow_name("FSO1100A", ext="tar.gz"), buffer.getvalue(), "IRR_EXTRAC", http_server[1])


def test_plain_tar_named_tar_gz(platform, samples, http_server):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("1.xml")
        info.size = len(samples["ubl"])
        archive.addfile(info, io.BytesIO(samples["ubl"]))
    refuse(platform, flow_name("FSO1100A", ext="tar.gz"), buffer.getvalue(), "IRR_EXTRAC", http_server[1])


def link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("member", [
    link("2.xml", "/etc/passwd"),
    link("2.xml", "1.xml", tarfile.LNKTYPE),
    "../2.xml",
    "factures/../../2.xml",
    "/tmp/2.xml",
])
def test_hostile_archive_members(platform, samples, http_server, member):
    data = tar_gz([("1.xml", samples["ubl"]), (member, samples["ubl"])])
    refuse(platform, flow_name("FSO1100A", ext="tar.gz"), data, "IRR_EXTRAC", http_server[1])
    assert not (platform.root.parent / "2.xml").exists()


def test_device_member(platform, samples, http_server):
    device = tarfile.TarInfo("2.xml")
    device.type, device.devmajor, device.devminor = tarfile.CHRTYPE, 1, 3
    data = tar_gz([("1.xml", samples["ubl"]), (device, b"")])
    refuse(platform, flow_name("FSO1100A", ext="tar.gz"), data, "IRR_EXTRAC", http_server[1])


# ------------------------------------------------------------------ property: any bytes, a coded report


@pytest.fixture(scope="module")
def fuzz_platform(tmp_path_factory):
    return make_platform(tmp_path_factory.mktemp("fuzz"), limits={"max_flow_bytes": 1_000_000,
                                                                  "max_file_bytes": 1_000_000})


def _mutations(base: bytes):
    positions = st.integers(0, len(base))
    return st.one_of(
        positions.map(lambda n: base[:n]),  # truncated
        st.tuples(positions, st.binary(min_size=1, max_size=16)).map(
            lambda t: base[: t[0]] + t[1] + base[t[0] + len(t[1]):]),  # overwritten
        st.tuples(positions, st.binary(min_size=1, max_size=16)).map(
            lambda t: base[: t[0]] + t[1] + base[t[0]:]),  # inserted
    )


_fuzz_ids = itertools.count(1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_arbitrary_bytes_always_give_a_coded_report(fuzz_platform, samples, http_server, data):
    kind = data.draw(st.sampled_from(["cpp", "ubl", "tar"]), label="kind")
    if kind == "tar":
        base = tar_gz([("1.xml", samples["ubl"])])
        name = flow_name("FSO1100A", ext="tar.gz", flow_id=f"FUZ{next(_fuzz_ids):022d}")
    else:
        base = samples[kind]
        name = flow_name("FSO1110A" if kind == "cpp" else "FSO1100A", flow_id=f"FUZ{next(_fuzz_ids):022d}")
    content = data.draw(st.one_of(st.binary(max_size=600), _mutations(base)), label="content")

    platform = fuzz_platform
    flow = platform.ingest(platform.file(name, content))  # never raises
    assert flow.state in TERMINAL_STATES
    _, root = platform.report(flow, "CSO")  # always a report, valid against the schema
    status = flow_status(root)
    lines = error_lines(root)
    if flow.error_code:
        assert flow.error_code.startswith("IRR_") and status == "93"
        assert lines[0]["NatureErreur"] == flow.error_code == lines[0]["CodeErreur"]
        assert any(e.get("event") == "flow_irrecevable" and e.get("flow") == flow.id for e in platform.logs)
    elif flow.accepted_count < flow.invoice_count:  # some invoice refused: each says why
        assert status in ("93", "96") and lines and all(line["CodeErreur"] for line in lines)
    else:
        assert status == "90"
    for report in platform.stored_reports(flow.id):
        validate_report(report["content"])
    assert Path(flow.archive_path).read_bytes() == content
    assert_nothing_leaked(platform, http_server[1])
