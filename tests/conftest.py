"""Shared fixtures. The PostgreSQL plugin starts a throwaway server for `db_url` tests.

Every test is also held to AIFE's official schemas (`schemas/aife/`, copied verbatim; the checks
are in tests/aife.py), on every file it makes, without having to ask:

- every XML file that lands in a partner's `out/` (`.../partners/<APP>/out/*.xml`) is validated
  against the official schema its root element names (`OUT_SCHEMAS`): after each test that
  used `tmp_path` (the failure then names that test), and once more at the end of the session
  over everything under pytest's base temporary directory (spools made with
  `tmp_path_factory`); each file is checked once, again only if it changed. Transport tests
  that put stand-in bytes in `out/` (SFTP, push) say so with `@pytest.mark.stand_in_reports`
  (or `pytestmark`): the files of their `tmp_path` are then left unchecked;
- every CPP flow `edi.gen.generate` writes is validated against `CPPFactureMixte_V1.17.xsd` as
  soon as it is written: exactly the invoices generated with the `xsd` error are refused, and
  the flow without them is valid.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest

import edi.gen
from tests.aife import OutFiles, check_generated_flow

pytest_plugins = ["tests.conftest_pg"]


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "stand_in_reports: the test puts stand-in bytes (not reports) in partners' out/ folders")


@pytest.fixture(scope="session")
def out_files() -> OutFiles:
    return OutFiles()


@pytest.fixture(scope="session", autouse=True)
def official_schemas_everywhere(tmp_path_factory, out_files) -> Iterator[None]:
    """Generated CPP flows checked as they are written; every `out/` checked at the end."""
    real = edi.gen.generate

    @functools.wraps(real)
    def generate(*args, **kwargs):
        flow = real(*args, **kwargs)
        check_generated_flow(flow)
        return flow

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(edi.gen, "generate", generate)
        yield
    problems = out_files.problems(tmp_path_factory.getbasetemp())
    assert not problems, "fichiers de out/ hors schéma officiel :\n" + "\n".join(problems)


@pytest.fixture(autouse=True)
def official_out_files(request, out_files) -> Iterator[None]:
    """After a test that used `tmp_path`, every file in a partner's `out/` there is valid."""
    base = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if base is None:
        return
    if request.node.get_closest_marker("stand_in_reports") is not None:
        out_files.leave(base)
        return
    problems = out_files.problems(base)
    assert not problems, "fichiers de out/ hors schéma officiel :\n" + "\n".join(problems)
