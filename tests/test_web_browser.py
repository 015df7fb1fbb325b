"""End to end in a real headless Chromium (Debian's `chromium` + `chromium-driver`, installed by
`make test`), driven by Selenium, against the console served by uvicorn on a free port: log in as
ops and as a sender, search, open an invoice and its certificate, export CSV, and find that another
partner's flow by direct URL is a 404 page."""

from __future__ import annotations

import csv
import shutil
import time

import pytest

from edi.web.server import WebThread
from tests.helpers import DEMO
from tests.web_helpers import OTHER, PASSWORD, make_console

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="chromium ou chromedriver introuvable : `make test` les installe (apt-get install chromium "
           "chromium-driver, en root) ; l'installation a échoué ou n'a pas été lancée")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    console = make_console(tmp_path_factory.mktemp("browser"))
    server = WebThread(console.platform.cfg, port=0).start()
    try:
        yield console, f"http://localhost:{server.port}"
    finally:
        server.stop()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(tmp_path / "downloads"),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(5)
    driver.downloads = tmp_path / "downloads"
    try:
        yield driver
    finally:
        driver.quit()


def _then(driver, act) -> None:
    """Do `act` (a click, an Enter), then wait for the next page to replace this one: reading
    right after a click could otherwise read the old page on a loaded machine."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")
    act()
    WebDriverWait(driver, 10).until(expected_conditions.staleness_of(old))


def _login(driver, base: str, login: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(base + "/")
    assert driver.current_url.startswith(base + "/connexion")  # no session: the login page
    driver.find_element(By.ID, "login").send_keys(login)
    field = driver.find_element(By.ID, "password")
    field.send_keys(PASSWORD)
    _then(driver, lambda: field.send_keys(Keys.ENTER))  # keyboard only
    assert driver.find_element(By.TAG_NAME, "h1").text == "Tableau de bord"


def _wait_for_file(folder, name: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = folder / name
        if path.is_file() and path.stat().st_size > 0:
            return path
        time.sleep(0.1)
    raise AssertionError(f"{name} jamais téléchargé dans {folder}: {list(folder.glob('*')) if folder.exists() else []}")


def test_ops_searches_opens_an_invoice_and_exports_csv(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    console, base = site
    _login(browser, base, "ops")
    assert "Factures par statut" in browser.page_source
    detail = console.platform.detail(console.demo_flow.id)
    wanted = next(i for i in detail["invoices"] if i["deposit_no"])

    _then(browser, browser.find_element(By.LINK_TEXT, "Factures").click)
    number = browser.find_element(By.ID, "number")  # reached by its label, typed, sent with Enter
    assert browser.find_element(By.CSS_SELECTOR, "label[for=number]").text == "Numéro de facture"
    number.send_keys(wanted["number"])
    _then(browser, lambda: number.send_keys(Keys.ENTER))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.results tbody tr")
    assert len(rows) == 1 and wanted["deposit_no"] in rows[0].text

    _then(browser, rows[0].find_element(By.LINK_TEXT, wanted["number"]).click)
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Facture {wanted['number']}"
    assert "03 Mise à disposition du destinataire" in browser.find_element(By.ID, "statut").text
    _then(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "Certificat de dépôt").click)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Certificat de dépôt"
    assert wanted["deposit_no"] in browser.page_source

    browser.get(base + "/factures?status=03")
    browser.find_element(By.LINK_TEXT, "Exporter en CSV").click()
    exported = _wait_for_file(browser.downloads, "factures.csv")
    with exported.open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    assert wanted["deposit_no"] in {r["Numéro de dépôt"] for r in rows}
    assert {r["Émetteur"] for r in rows} == {DEMO, OTHER}

    browser.get(base + f"/flux/{console.demo_flow.id}")
    assert "Flux reçu, intégration partielle" in browser.page_source  # the report, in French


def test_sender_sees_only_its_flows_and_gets_404_for_another(site, browser):
    from selenium.webdriver.common.by import By

    console, base = site
    from selenium.webdriver.support.ui import WebDriverWait

    _login(browser, base, "demo")
    browser.find_element(By.LINK_TEXT, "Flux").click()
    WebDriverWait(browser, 10).until(lambda b: b.current_url.startswith(base + "/flux"))  # the new page, not the old
    rows = browser.find_elements(By.CSS_SELECTOR, "table.results tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[2].text for r in rows] == [DEMO]
    browser.get(base + f"/flux/{console.other_flow.id}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Page introuvable"
    assert console.other_flow.filename not in browser.page_source
    browser.get(base + f"/flux/{console.demo_flow.id}")
    assert console.demo_flow.filename in browser.page_source
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()  # logout (a CSRF-protected form)
    WebDriverWait(browser, 10).until(lambda b: b.current_url.startswith(base + "/connexion"))
    browser.get(base + "/factures")
    assert browser.current_url.startswith(base + "/connexion")


def test_recipient_sets_a_status_and_the_sender_gets_its_report(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    console, base = site
    detail = console.platform.detail(console.demo_flow.id)
    wanted = next(i for i in detail["invoices"] if i["deposit_no"] and i["recipient_siret"] == console.chu_siret)
    before = set(console.platform.out_files(DEMO))
    _login(browser, base, "chu")
    browser.get(base + f"/factures/{wanted['deposit_no']}")
    Select(browser.find_element(By.ID, "nouveau-statut")).select_by_value("motif")
    Select(browser.find_element(By.ID, "motif")).select_by_value("JUSTIF_ABS")  # the reason decides: 06
    assert browser.find_element(By.CSS_SELECTOR, "label[for=commentaire]").text == "Commentaire pour le fournisseur"
    browser.find_element(By.ID, "commentaire").send_keys("Joindre le procès-verbal.")
    _then(browser, browser.find_element(By.ID, "enregistrer-statut").click)
    assert "03 → 06" in browser.find_element(By.ID, "message").text
    assert browser.find_element(By.ID, "statut").text.startswith("06")
    (new,) = set(console.platform.out_files(DEMO)) - before
    assert new.startswith(f"FEN1200A_{DEMO}_FEN") and b"chu" in console.platform.out_files(DEMO)[new]


def test_ops_retries_a_held_flow(site, browser):
    from selenium.webdriver.common.by import By
    from sqlalchemy import update

    from edi import db, trace
    from edi.db.models import ON_HOLD, Flow

    console, base = site
    flow_id = console.other_flow.id
    original = console.platform.flow(flow_id)
    with db.session(console.platform.url) as s:  # as after three platform errors
        s.execute(update(Flow).where(Flow.id == flow_id).values(state=ON_HOLD, attempts=3))
        trace.add(s, flow_id, trace.HELD, ON_HOLD, "3 tentatives en échec")
        s.commit()
    try:
        _login(browser, base, "ops")
        browser.get(base + f"/flux/{flow_id}")
        assert "held" in browser.find_element(By.ID, "etapes").text  # the step trace
        _then(browser, browser.find_element(By.ID, "relancer").click)
        assert "remis en file" in browser.find_element(By.ID, "message").text
        assert console.platform.flow(flow_id).state == "RECU"
        assert "remis en file par ops" in console.platform.detail(flow_id)["trace"][-1]["detail"]
    finally:  # the module's platform is shared: the flow back as it was
        with db.session(console.platform.url) as s:
            s.execute(update(Flow).where(Flow.id == flow_id).values(state=original.state, attempts=original.attempts))
            s.commit()


def test_sender_recycles_an_invoice_in_04(site, browser):
    from selenium.webdriver.common.by import By

    from edi import lifecycle, queries
    from edi.reports.outbox import deliver_pending
    from edi.route import status
    from edi.spool import Spool

    console, base = site
    invoices = [i for i in console.platform.detail(console.demo_flow.id)["invoices"] if i["deposit_no"]]
    chu = queries.invoice_detail(console.platform.url, next(
        i["deposit_no"] for i in invoices if i["recipient_siret"] == console.chu_siret))
    wanted = next(i for i in invoices[1:] if i["recipient_siret"] != console.chu_siret)  # not the ops test's
    applied = status.change_status(console.platform.url, wanted["deposit_no"],  # as its recipient would
                                   status.Change("04", lifecycle.OPS, "ops", reason="REF_ERR"))
    deliver_pending(console.platform.url, Spool(console.platform.cfg.spool_root), applied.flow_id)
    before = set(console.platform.out_files(DEMO))
    _login(browser, base, "demo")
    browser.get(base + f"/factures/{wanted['deposit_no']}")
    assert browser.find_element(By.ID, "statut").text.startswith("04")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=recycler-siret]").text == "SIRET du destinataire"
    for field, value in (("recycler-siret", chu["recipient_siret"]), ("recycler-service", chu["code_service"]),
                         ("recycler-ej", chu["ej"])):
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(value or "")
    _then(browser, browser.find_element(By.ID, "recycler").click)
    assert "04 → 03" in browser.find_element(By.ID, "message").text
    assert browser.find_element(By.ID, "statut").text.startswith("03")
    (new,) = set(console.platform.out_files(DEMO)) - before
    assert new.startswith(f"FEN1200A_{DEMO}_FEN") and b"demo" in console.platform.out_files(DEMO)[new]
