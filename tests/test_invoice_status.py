"""Status changes after deposit through the real CLI on a real processed flow (issue 9, ops path):
`edi invoices status` and `edi invoices history`, the event rows, and the FEN1200A written to the
sender's out/ with who set the status. On SQLite and PostgreSQL (`db_url`).
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select, text

from edi import db
from edi.db.models import Invoice, Report, StatusEvent, utcnow
from edi.reports.render import render_text
from edi.route import status
from tests.helpers import DEMO, generated, make_platform, status_lines, validate_report

DAY = date(2026, 3, 2)


def deposited(tmp_path, db_url, invoices: int = 2, partners=None):
    """A platform and the deposit numbers of a processed flow whose invoices are all accepted."""
    kwargs = {"partners": partners} if partners else {}
    platform = make_platform(tmp_path, db_url=db_url, **kwargs)
    made = generated(tmp_path, "FSO1110A", invoices, seed=3, reference_date=DAY)
    flow = platform.ingest(made.path)
    assert flow.accepted_count == invoices
    invoices_ = platform.detail(flow.id)["invoices"]
    return platform, flow, [i["deposit_no"] for i in invoices_], {i["deposit_no"]: i["number"] for i in invoices_}


def new_out_files(platform, before: dict) -> dict[str, bytes]:
    return {name: data for name, data in platform.out_files().items() if name not in before}


def counts(platform) -> tuple[int, int, list[str]]:
    with db.session(platform.url) as s:
        return (s.execute(select(func.count()).select_from(StatusEvent)).scalar_one(),
                s.execute(select(func.count()).select_from(Report)).scalar_one(),
                [i.status for i in s.execute(select(Invoice).order_by(Invoice.id)).scalars()])


def producers(root) -> list[str]:
    """Who set each status of a processing report: `Producteur@Id` (official schema), or the
    element's text (the project's earlier shape)."""
    return [p.get("Id") or p.text or "" for p in root.iterfind("CPPFactureStatuts/CPPFactureStatutUnitaire/"
                                                               "DonneesStatut/Producteur")]


def lines_with_producer(root) -> list[dict]:
    return [{**line, "Producteur": who} for line, who in zip(status_lines(root), producers(root), strict=True)]


def one_line(platform, before, number: str) -> dict:
    """The single new FEN1200A of an action: valid, for the sender, one line for `number`."""
    (name, data), = new_out_files(platform, before).items()
    assert name.startswith(f"FEN1200A_{DEMO}_FEN") and name.endswith(".xml")
    root = validate_report(data)
    assert root.findtext("Enveloppe/EnveloppeUnitaire/Partenaires/Recepteur/Id") == DEMO
    (line,) = lines_with_producer(root)
    assert line["IdFacture"] == number
    return {"name": name, "data": data, **line}


def test_ops_take_an_invoice_to_payment(tmp_path, db_url):
    platform, flow, (deposit, _), numbers = deposited(tmp_path, db_url)
    number = numbers[deposit]

    before = platform.out_files()
    result = platform.cli("invoices", "status", deposit, "07", "--by", "alice", "--comment", "Réception le 3 mars.")
    assert result.exit_code == 0, result.output
    assert "03 → 07 Service fait, par alice" in result.stdout
    line = one_line(platform, before, number)
    assert (line["IdStatut"], line["Producteur"]) == ("07", "alice")
    assert line["Commentaire"] == "Commentaire : Réception le 3 mars."
    assert "ComplementStatut" not in line and "IdMandatDP" not in line
    assert "par alice" in render_text(line["data"])
    first = line["name"]

    before = platform.out_files()
    assert platform.cli("invoices", "status", deposit, "08", "--by", "alice", "--mandate", "M-2026-0042").exit_code == 0
    line = one_line(platform, before, number)
    assert (line["IdStatut"], line["IdMandatDP"], line["Commentaire"]) == ("08", "M-2026-0042", "Mandat n° M-2026-0042.")

    before = platform.out_files()
    assert platform.cli("invoices", "status", deposit, "11", "--by", "bob").exit_code == 0
    last = one_line(platform, before, number)
    assert (last["IdStatut"], last["Producteur"]) == ("11", "bob")

    shown = platform.cli_json("invoices", "history", deposit)
    assert (shown["deposit_no"], shown["number"], shown["status"], shown["final"]) == (deposit, number, "11", True)
    assert shown["label"] == "Mise en paiement"
    assert all(codes == [] for codes in shown["next"].values())
    events = shown["events"]
    assert [(e["status"], e["actor"], e["producer"]) for e in events] == [
        ("01", "platform", "EDI"), ("03", "platform", "EDI"), ("07", "ops", "alice"), ("08", "ops", "alice"),
        ("11", "ops", "bob")]
    assert [e["mandate"] for e in events] == ["", "", "", "M-2026-0042", ""]
    assert events[2]["comment"] == "Réception le 3 mars."
    assert [e["name"] for e in events[2:]] == ["Service fait", "Mandatée", "Mise en paiement"]
    deposit_report = events[0]["report"]
    assert deposit_report == events[1]["report"] and deposit_report.startswith(f"FEN1200A_{DEMO}_")
    assert events[2]["report"] == first and events[4]["report"] == last["name"]
    assert len({e["report"] for e in events}) == 4  # the deposit's, then one per action
    assert set(platform.out_files()) >= {e["report"] for e in events}
    assert platform.cli_json("invoices", "show", deposit)["status"] == "11"
    # the reports of the actions belong to the invoice's flow: `edi flows show` lists them
    assert {e["report"] for e in events} <= {r["filename"] for r in platform.detail(flow.id)["reports"]}

    # 11 is final: refused, coded, one line, nothing changed
    before, state = platform.out_files(), counts(platform)
    result = platform.cli("invoices", "status", deposit, "07", "--by", "alice")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Erreur : REJ_RG : la facture est au statut final 11 (Mise en paiement) : passage à 07 (Service fait) impossible")
    assert platform.out_files() == before and counts(platform) == state
    assert platform.validate_all_reports() == len(platform.out_files())


def test_event_rows_and_report_rows(tmp_path, db_url):
    platform, flow, (deposit, _), numbers = deposited(tmp_path, db_url)
    result = platform.cli("invoices", "status", deposit, "06", "--reason", "JUSTIF_ABS", "--by", "carole",
                          "--comment", "Joindre le procès-verbal de réception.")
    assert result.exit_code == 0, result.output
    with db.session(platform.url) as s:
        invoice = s.execute(select(Invoice).where(Invoice.deposit_no == deposit)).scalar_one()
        events = s.execute(select(StatusEvent).where(StatusEvent.invoice_id == invoice.id)
                           .order_by(StatusEvent.id)).scalars().all()
        report = s.get(Report, events[-1].report_id)
    assert invoice.status == "06"
    assert [(e.code, e.actor, e.producer) for e in events] == [
        ("01", "platform", "EDI"), ("03", "platform", "EDI"), ("06", "ops", "carole")]
    event = events[-1]
    assert (event.reason, event.comment, event.mandate) == (
        "JUSTIF_ABS", "Joindre le procès-verbal de réception.", "")
    assert (report.app, report.kind, report.flow_id, report.written_at is not None) == (DEMO, "processing", flow.id, True)
    (line,) = lines_with_producer(validate_report(platform.out_files()[report.filename]))
    assert (line["IdStatut"], line["ComplementStatut"], line["Producteur"]) == ("06", "JUSTIF_ABS", "carole")
    assert line["Commentaire"] == ("Motif : Justificatif absent ou insuffisant (JUSTIF_ABS). "
                                   "Commentaire : Joindre le procès-verbal de réception.")
    text = render_text(report.content)
    assert "06 Suspendue" in text and "Justificatif absent ou insuffisant" in text and "par carole" in text


@pytest.mark.parametrize("args, code, words", [
    (("05", "--reason", "JUSTIF_ABS"), "REJ_RG", ["JUSTIF_ABS", "06 (Suspendue)", "05 (Rejetée)"]),
    (("04",), "REJ_INC", ["motif obligatoire", "04 (A recycler)"]),
    (("06", "--reason", "PAS_UN_MOTIF"), "REJ_INC", ["PAS_UN_MOTIF"]),
    (("07", "--reason", "AUTRE"), "REJ_RG", ["07 (Service fait)"]),
    (("07", "--mandate", "M1"), "REJ_RG", ["mandat", "07 (Service fait)"]),
    (("12",), "REJ_HAB", ["12 (Complétée)", "le fournisseur"]),
    (("03",), "REJ_HAB", ["03 (Mise à disposition)", "la plateforme"]),
    (("09", "--comment", "x"), None, []),  # allowed: control case for the parametrisation
    (("22",), "REJ_RG", ["22 (Conforme – non intégrée)", "pas encore pris en charge"]),
    (("42",), "REJ_INC", ["42"]),
])
def test_refused_moves_change_nothing(tmp_path, args, code, words):
    platform, flow, (deposit, _), _ = deposited(tmp_path, None, invoices=2)
    before, state = platform.out_files(), counts(platform)
    result = platform.cli("invoices", "status", deposit, *args, "--by", "alice")
    if code is None:
        assert result.exit_code == 0, result.output
        assert len(platform.out_files()) == len(before) + 1
        return
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert "\n" not in message and message.startswith(f"Erreur : {code} : "), message
    for word in words:
        assert word in message, (word, message)
    assert platform.out_files() == before and counts(platform) == state


def test_lenient_input_and_unknown_deposit(tmp_path, db_url):
    platform, flow, (first, second), numbers = deposited(tmp_path, db_url)
    # "5" is 05 and the reason's case does not matter; the OS user acts when --by is absent
    result = platform.cli("invoices", "status", second, "5", "--reason", "montanttotal_err",
                          env={"LOGNAME": "dupont", "USER": "dupont"})
    assert result.exit_code == 0, result.output
    shown = platform.cli_json("invoices", "history", second)
    assert (shown["status"], shown["final"]) == ("05", True)
    assert (shown["events"][-1]["producer"], shown["events"][-1]["reason"]) == ("dupont", "MONTANTTOTAL_ERR")
    assert shown["events"][-1]["reason_label"] == "Montant de la facture erroné"
    # the other invoice of the flow is untouched
    assert platform.cli_json("invoices", "history", first)["status"] == "03"
    assert platform.cli_json("invoices", "history", first)["next"]["ops"] == [
        "04", "05", "06", "07", "08", "09", "10", "11"]

    unknown = "EDI" + "9" * 22
    result = platform.cli("invoices", "status", unknown, "07", "--by", "alice")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Erreur : REJ_INEX : aucune facture déposée sous le numéro {unknown}"
    assert platform.cli("invoices", "history", unknown).exit_code == 2
    assert platform.cli("invoices", "status", first, "07", "--by", "").exit_code == 2
    assert platform.cli("invoices", "status", first, "07", "--by", "a\nb").exit_code == 2
    assert platform.cli_json("invoices", "history", first)["status"] == "03"


def test_history_table(tmp_path):
    platform, flow, (deposit, _), numbers = deposited(tmp_path, None)
    assert platform.cli("invoices", "status", deposit, "04", "--reason", "CODE_ROUTAGE_ERR", "--by", "alice",
                        "--comment", "[SE] inconnu").exit_code == 0
    result = platform.cli("invoices", "history", deposit, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"Facture {numbers[deposit]} — dépôt {deposit} — statut 04" in out
    assert "04 A recycler — par alice (ops) — motif CODE_ROUTAGE_ERR — commentaire : [SE] inconnu — compte rendu FEN1200A_" in out
    assert "Statuts possibles pour l'exploitation : aucun" in out  # 04 waits for the supplier's resend


def test_a_batch_gives_one_report_per_sender(tmp_path, db_url):
    """The service behind both paths: changes of invoices deposited by two senders, in one
    transaction, give one FEN1200A to each sender holding its lines in order."""
    partners = [{"app": DEMO}, {"app": "AUTRE"}]
    platform = make_platform(tmp_path, db_url=db_url, partners=partners)
    flows = [platform.ingest(generated(tmp_path, "FSO1110A", 1, seed=n, partner=app, reference_date=DAY).path)
             for n, app in enumerate((DEMO, "AUTRE", DEMO), start=1)]
    at = utcnow()
    with db.session(platform.url) as s:
        invoices = [s.execute(select(Invoice).where(Invoice.flow_id == f.id)).scalar_one() for f in flows]
        changed = [(inv, status.record(s, inv, status.Change("07", "recipient", "CHUDEMO"), at)) for inv in invoices]
        reports = status.report(s, changed, at)
        s.commit()
    assert [r.app for r in reports] == [DEMO, "AUTRE"]
    from edi.reports.outbox import deliver_pending

    assert deliver_pending(platform.url, platform.spool) == 2
    demo = lines_with_producer(validate_report(platform.out_files(DEMO)[reports[0].filename]))
    assert [line["IdFacture"] for line in demo] == [invoices[0].number, invoices[2].number]
    assert {line["Producteur"] for line in demo} == {"CHUDEMO"}
    other = status_lines(validate_report(platform.out_files("AUTRE")[reports[1].filename]))
    assert [line["IdFacture"] for line in other] == [invoices[1].number]


def test_a_concurrent_change_is_a_conflict(tmp_path, db_url):
    platform, flow, (deposit, _), _ = deposited(tmp_path, db_url)
    with db.session(platform.url) as s:
        stale = s.execute(select(Invoice).where(Invoice.deposit_no == deposit)).scalar_one()
    status.change_status(platform.url, deposit, status.Change("07", "ops", "alice"))
    with db.session(platform.url) as s, pytest.raises(status.Conflict):
        status.record(s, stale, status.Change("08", "ops", "bob"), utcnow())
    # the service itself reads the status afresh: the same change goes through
    applied = status.change_status(platform.url, deposit, status.Change("08", "ops", "bob"))
    assert (applied.previous, applied.status) == ("07", "08")


def test_a_database_from_before_the_life_cycle_is_upgraded(tmp_path, db_url):
    """StatusEvent's `actor` and `mandate` are additive: an existing database gains them on first
    use, and the events already there read as the platform's."""
    platform, flow, (deposit, _), _ = deposited(tmp_path, db_url)
    with db.engine_for(platform.url).begin() as conn:
        for column in ("actor", "mandate"):
            conn.execute(text(f"ALTER TABLE statusevent DROP COLUMN {column}"))
    db.dispose_all()  # the next command starts as a new process would
    assert platform.cli("invoices", "status", deposit, "08", "--mandate", "M7", "--by", "alice").exit_code == 0
    events = platform.cli_json("invoices", "history", deposit)["events"]
    assert [(e["status"], e["actor"], e["mandate"]) for e in events] == [
        ("01", "platform", ""), ("03", "platform", ""), ("08", "ops", "M7")]
