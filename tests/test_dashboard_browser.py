"""The dashboard in a real browser: Playwright driving Debian's Chromium, headless, against a
real server process (``python api/app.py``, with its rollout ticker).

Never ``playwright install``: the browser is the system's ``/usr/bin/chromium`` (``.ci/run``
installs the ``chromium`` package). Screenshots of every page go to
``test-output/screenshots/``. The model page during a canary is also the README's picture,
``docs/dashboard-canary.png``: written when it is missing, refreshed with
``UPDATE_SCREENSHOTS=1`` (so that a test run leaves the committed file alone).
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from models.onnx_examples import linear_model
from tests.support import ROOT, LiveServer

pytestmark = pytest.mark.slow   # a browser against a real server

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("the dashboard browser tests need Debian's chromium at /usr/bin/chromium "
                "(apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the dashboard browser tests need the playwright package (requirements-dev.txt)")

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync"]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
DOCS_SCREENSHOT = ROOT / "docs" / "dashboard-canary.png"
PAGES = {"models": "/ui/", "model": "/ui/models/lin", "deployments": "/ui/deployments",
         "rollbacks": "/ui/rollbacks", "alerts": "/ui/alerts", "snapshots": "/ui/snapshots"}
TIMEOUT_MS = 20_000
# A canary step waits for its analysis (every 3 s, at least 5 requests): on a loaded machine
# 20 s was once not enough for the 50% step. Waiting longer costs nothing when it moves.
STEP_TIMEOUT_MS = 45_000
sync_api.expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator["sync_api.Browser"]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "data").start()
    yield live
    live.stop()


class Page:
    """A browser tab on the server, collecting script errors (a CSP violation is one too)."""

    def __init__(self, browser: "sync_api.Browser", base_url: str,
                 allowed_errors: tuple[str, ...] = ()) -> None:
        self.context = browser.new_context(viewport={"width": 1360, "height": 1000},
                                           base_url=base_url)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.tab = self.context.new_page()
        self.errors: list[str] = []
        self.allowed = allowed_errors
        self.tab.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.tab.on("console", self._console)

    def _console(self, message: "sync_api.ConsoleMessage") -> None:
        if message.type == "error" and not any(a in message.text for a in self.allowed):
            self.errors.append(f"console: {message.text}")

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.tab.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()
        assert not self.errors, self.errors


@pytest.fixture
def page(browser, server) -> Iterator[Page]:
    tab = Page(browser, server.url)
    yield tab
    tab.close()


def register_onnx(url: str, name: str, versions: list[str],
                  headers: dict[str, str] | None = None) -> None:
    s = requests.Session()
    s.headers.update(headers or {})
    assert s.post(f"{url}/api/models/register", json={"name": name}).status_code == 201
    for version in versions:
        r = s.post(f"{url}/api/models/{name}/versions/register",
                   json={"version": version, "provider": "onnx", "status": "experimental"})
        assert r.status_code == 201, r.text
        r = s.put(f"{url}/api/models/{name}/versions/{version}/artifact", data=linear_model(),
                  headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text


def confirm(tab: "sync_api.Page", reason: str = "") -> None:
    dialog = tab.locator("#confirm")
    dialog.wait_for(state="visible")
    if reason:
        tab.fill("#confirm-reason", reason)
    tab.click("#confirm-ok")


def segment(tab: "sync_api.Page", version: str, weight: int) -> "sync_api.Locator":
    return tab.locator(f'[data-testid="traffic-bar"] .seg[data-version="{version}"]'
                       f'[data-weight="{weight}"]')


def test_every_page_renders_with_an_empty_registry(page: Page) -> None:
    tab = page.tab
    tab.goto("/")
    assert tab.url.endswith("/ui/")
    page.allowed = ("404",)   # the model page asks for a model that does not exist
    for name, path in PAGES.items():
        tab.goto(path)
        if name == "model":   # an unknown model: the API's 404, said plainly
            sync_api.expect(tab.locator("#model-missing")).to_contain_text(
                "model 'lin' does not exist")
            sync_api.expect(tab.locator("#model-body")).to_be_hidden()
        else:
            sync_api.expect(tab.locator(".empty:visible").first).to_be_visible()
        page.shot(f"empty-{name}")
    tab.goto("/ui/")
    sync_api.expect(tab.locator("#models-empty")).to_contain_text("No models registered yet")


def test_canary_moves_the_bar_live_then_roll_back(page: Page, server: LiveServer) -> None:
    url = server.url
    tab = page.tab
    register_onnx(url, "lin", ["1.0.0", "1.1.0"])

    # the first deployment, from the page: form, confirmation, live update
    tab.goto(PAGES["model"])
    tab.fill("#deploy-version", "1.0.0")
    tab.select_option("#deploy-strategy", "direct")
    tab.click("#deploy-form button[type=submit]")
    confirm(tab, "first release")
    sync_api.expect(tab.locator("#toast")).to_contain_text("started")
    sync_api.expect(segment(tab, "1.0.0", 100)).to_be_visible()
    sync_api.expect(tab.locator('[data-testid="state-machine"]')).to_have_attribute(
        "data-state", "succeeded")

    stop = threading.Event()

    def traffic() -> None:
        s = requests.Session()
        while not stop.is_set():
            s.post(f"{url}/api/models/lin/predict", json={"input": [[1, 2, 3, 4]]}, timeout=5)
            stop.wait(0.01)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        tab.evaluate("window.__sameDocument = true")
        # a canary from the page, with analysis settings that let it move in seconds
        tab.fill("#deploy-version", "1.1.0")
        tab.select_option("#deploy-strategy", "canary")
        tab.click("#deploy-analysis summary")
        tab.fill("#an-min-requests", "5")
        tab.fill("#an-interval", "3")
        tab.fill("#an-deadline", "60")
        # the test judges the page, not the machine's latency: a loaded CI runner once took
        # 11.6x the stable p95 over five requests
        tab.fill("#an-p95-tolerance", "1")
        tab.click("#deploy-form button[type=submit]")
        confirm(tab, "canary of 1.1.0")
        sync_api.expect(tab.get_by_text("p95 ≤ 1.5× stable (or within 1.00 s)")).to_be_visible()
        sync_api.expect(segment(tab, "1.1.0", 10)).to_be_visible()
        sync_api.expect(tab.locator("#live-indicator")).to_be_visible()
        tab.select_option("#window", "5m|10s")
        sync_api.expect(tab.locator('[data-testid="chart-requests"] .legend')).to_contain_text(
            "1.1.0")
        # ONNX reports no usage: the cost chart is there and says why it is flat
        sync_api.expect(tab.locator('[data-testid="chart-cost"]')).to_contain_text(
            "no priced usage")
        sync_api.expect(segment(tab, "1.1.0", 50)).to_be_visible(timeout=STEP_TIMEOUT_MS)
        machine = tab.locator('[data-testid="state-machine"]')
        sync_api.expect(machine.locator(".node.current")).to_contain_text("step 2 of 3")
        sync_api.expect(tab.locator('[data-step="0"] .badge')).to_have_text("pass")
        shot = page.shot("model-canary")
        if os.environ.get("UPDATE_SCREENSHOTS") or not DOCS_SCREENSHOT.exists():
            DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, DOCS_SCREENSHOT)
        sync_api.expect(segment(tab, "1.1.0", 100)).to_be_visible(timeout=STEP_TIMEOUT_MS)
        sync_api.expect(machine).to_have_attribute("data-state", "succeeded",
                                                   timeout=STEP_TIMEOUT_MS)
        assert tab.evaluate("window.__sameDocument") is True   # updated without a reload
    finally:
        stop.set()
        sender.join(10)

    # roll back from the page, with confirmation
    tab.click("#rollback-button")
    confirm(tab, "checking a regression")
    sync_api.expect(tab.locator("#toast")).to_contain_text("from 1.1.0 to 1.0.0")
    sync_api.expect(segment(tab, "1.0.0", 100)).to_be_visible()
    sync_api.expect(tab.locator('[data-testid="state-machine"]')).to_have_attribute(
        "data-state", "rolled_back")
    page.shot("model-after-rollback")

    # a refused action keeps the dialog open with the API's message
    page.allowed = ("409",)
    tab.click("#rollback-button")
    confirm(tab)
    sync_api.expect(tab.locator("#confirm-error")).to_contain_text("409 FAILED_PRECONDITION")
    tab.click("#confirm-cancel")

    # the history pages
    tab.goto(PAGES["rollbacks"])
    row = tab.locator("#rollbacks tr").first
    sync_api.expect(row).to_contain_text("1.1.0 → 1.0.0")
    sync_api.expect(row).to_contain_text("checking a regression")
    sync_api.expect(row.locator(".badge")).to_have_text("manual")
    page.shot("rollbacks")

    # issue 19: a shadow is listed with the rollouts; its row opens its report
    r = requests.post(f"{url}/api/models/lin/deploy", timeout=30, json={
        "version": "1.1.0", "strategy": "shadow", "sample_percent": 10, "duration_s": 600})
    assert r.status_code == 202, r.text
    tab.goto(PAGES["deployments"])
    rows = tab.locator("#deployments tr[data-deployment]")
    sync_api.expect(rows).to_have_count(3)
    sync_api.expect(rows.first).to_contain_text("10% mirrored")
    rows.nth(1).get_by_role("button", name="Details").click()
    sync_api.expect(tab.locator("tr.detail").first).to_contain_text("passed analysis")
    page.shot("deployments")
    rows.first.get_by_role("link", name="Report").click()
    sync_api.expect(tab.locator("#trial-report")).to_contain_text("Shadow of lin 1.1.0")

    tab.goto(PAGES["models"])
    sync_api.expect(tab.locator('tr[data-model="lin"]')).to_contain_text("1.0.0")
    page.shot("models")

    tab.goto(PAGES["snapshots"])
    sync_api.expect(tab.locator("#snapshots tr[data-snapshot]").first).to_contain_text(
        "before deployment")
    page.shot("snapshots")

    tab.goto(PAGES["alerts"])
    sync_api.expect(tab.locator("#alerts-empty")).to_contain_text("No active alerts")
    page.shot("alerts")


def test_keys_are_sent_and_refusals_shown(browser, tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "secured", env={"REGISTRY_ADMIN_TOKEN": "admin-secret"}).start()
    page = Page(browser, server.url, allowed_errors=("401", "403"))
    try:
        admin = {"Authorization": "Bearer admin-secret"}
        register_onnx(server.url, "lin", ["1.0.0"], headers=admin)
        reader = requests.post(f"{server.url}/api/keys", json={"name": "viewer", "role": "read"},
                               headers=admin).json()["token"]
        tab = page.tab
        tab.goto(PAGES["models"])   # the page is public; its data is not
        sync_api.expect(tab.locator("#banner")).to_contain_text("401 UNAUTHENTICATED")
        tab.fill("#api-key", reader)
        tab.click("#key-form button[type=submit]")
        sync_api.expect(tab.locator('tr[data-model="lin"]')).to_be_visible()
        sync_api.expect(tab.locator("#banner")).to_be_hidden()
        sync_api.expect(tab.locator("#key-state")).to_contain_text("key set")
        tab.goto(PAGES["model"])    # the key is remembered
        tab.fill("#deploy-version", "1.0.0")
        tab.click("#deploy-form button[type=submit]")
        confirm(tab)
        sync_api.expect(tab.locator("#confirm-error")).to_contain_text("403 PERMISSION_DENIED")
        page.shot("model-refused")
    finally:
        page.close()
        server.stop()


def wait_for(check, timeout: float = 15.0) -> None:
    """Poll the API until ``check()`` is true (server-side preconditions, not the page)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting on the server"
        time.sleep(0.1)


def test_snapshots_steering_alerts_and_paging(page: Page, server: LiveServer) -> None:
    url = server.url
    tab = page.tab
    s = requests.Session()
    register_onnx(url, "lin", ["1.0.0", "1.1.0"])
    assert s.post(f"{url}/api/models/lin/versions/register",   # no artifact: fails its check
                  json={"version": "1.2.0", "provider": "onnx"}).status_code == 201
    for i in range(55):
        assert s.post(f"{url}/api/models/register", json={"name": f"m{i:02d}"}).ok
    traffic = lambda: s.get(f"{url}/api/models/lin/traffic").json()["traffic"]["weights"]  # noqa: E731
    s.post(f"{url}/api/models/lin/deploy", json={"version": "1.0.0"})
    wait_for(lambda: traffic() == {"1.0.0": 100})

    # take a snapshot from the page, move on, restore it from the page
    tab.goto(PAGES["snapshots"])
    tab.fill("#snap-model", "lin")
    tab.click("#snapshot-form button[type=submit]")
    confirm(tab, "known good")
    sync_api.expect(tab.locator("#toast")).to_contain_text("taken")
    s.post(f"{url}/api/models/lin/deploy", json={"version": "1.1.0"})
    wait_for(lambda: traffic() == {"1.1.0": 100})
    tab.locator("#snapshots tr", has_text="known good").get_by_role(
        "button", name="Restore…").click()
    confirm(tab, "back to known good")
    sync_api.expect(tab.locator("#toast")).to_contain_text("Restored 1 model(s)")
    assert traffic() == {"1.0.0": 100}
    tab.goto(PAGES["rollbacks"])
    sync_api.expect(tab.locator("#rollbacks tr").first.locator(".badge")).to_have_text("snapshot")

    # steer a canary from the deployments page: pause, then abort
    s.post(f"{url}/api/models/lin/deploy", json={"version": "1.1.0", "strategy": "canary"})
    wait_for(lambda: traffic() == {"1.0.0": 90, "1.1.0": 10})
    tab.goto(PAGES["deployments"])
    row = tab.locator("#deployments tr[data-deployment]").first
    sync_api.expect(row).to_contain_text("progressing")
    row.get_by_role("button", name="Pause…").click()
    confirm(tab)
    sync_api.expect(tab.locator("#deployments tr[data-deployment]").first).to_contain_text(
        "paused")
    tab.locator("#deployments tr[data-deployment]").first.get_by_role(
        "button", name="Abort…").click()
    confirm(tab, "not today")
    sync_api.expect(tab.locator("#deployments tr[data-deployment]").first).to_contain_text(
        "aborted")
    assert traffic() == {"1.0.0": 100}

    # a version that fails its health check: the rollout fails, an alert is raised
    s.post(f"{url}/api/models/lin/deploy", json={"version": "1.2.0"})
    wait_for(lambda: s.get(f"{url}/api/alerts?active=true").json()["alerts"])
    tab.goto(PAGES["alerts"])
    sync_api.expect(tab.locator("#alerts tr").first).to_contain_text("critical")
    tab.goto(PAGES["model"])
    sync_api.expect(tab.locator('[data-testid="state-machine"]')).to_have_attribute(
        "data-state", "failed")
    sync_api.expect(tab.locator("#model-alerts")).to_contain_text("critical")

    # the models page: health, paging and search
    tab.goto(PAGES["models"])
    sync_api.expect(tab.locator('tr[data-model="lin"] .badge')).to_have_text("critical")
    sync_api.expect(tab.locator("#models tr")).to_have_count(50)
    tab.get_by_test_id("next-page").click()
    sync_api.expect(tab.locator("#models tr")).to_have_count(6)
    tab.fill("#q", "lin")
    sync_api.expect(tab.locator("#models tr")).to_have_count(1)
    assert "q=lin" in tab.url


def test_the_model_page_shows_how_to_call_it(page: Page, server: LiveServer) -> None:
    """Copy-paste examples for the clients the model speaks, with its real input (issue 15)."""
    register_onnx(server.url, "lin", ["1.0.0"])
    r = requests.post(f"{server.url}/api/models/lin/deploy",
                      json={"version": "1.0.0", "strategy": "direct"}, timeout=30)
    assert r.status_code == 201, r.text   # direct: switched before the answer
    page.tab.goto(PAGES["model"])
    examples = page.tab.locator('[data-testid="call-example"]')
    sync_api.expect(examples.first).to_contain_text('triton.InferInput("x", [1, 4], "FP32")')
    sync_api.expect(examples.nth(1)).to_contain_text(f"{server.url}/v2/models/lin/infer")
    page.shot("model-how-to-call")
