"""Issue 21, finding 7, in a real browser: a docs page runs in an origin of its own, so nothing
it runs can read the API key the dashboard keeps in ``localStorage``, and no page of the
server can be framed. (Debian's Chromium through Playwright, as the dashboard tests.)"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import LiveServer
from tests.test_dashboard_browser import CHROMIUM, LAUNCH_ARGS, sync_api

pytestmark = pytest.mark.slow

STEAL = """() => {
  let stolen;
  try { stolen = localStorage.getItem("model-registry-api-key-probe"); }
  catch (e) { stolen = "blocked: " + e.name; }
  return {origin: window.origin, stolen: stolen};
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("docs-browser")).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def context(server: LiveServer):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        ctx = browser.new_context(base_url=server.url)
        yield ctx
        browser.close()


@pytest.mark.parametrize("page_path", ["/docs/swagger/", "/docs/redoc/", "/docs/scalar/"])
def test_docs_pages_cannot_read_the_dashboards_storage(context, page_path):
    tab = context.new_page()
    tab.goto("/ui/")
    tab.evaluate("() => localStorage.setItem('model-registry-api-key-probe', 'mr_secret')")
    assert tab.evaluate(STEAL)["stolen"] == "mr_secret"      # the dashboard's own origin
    tab.goto(page_path)
    seen = tab.evaluate(STEAL)
    assert seen["origin"] == "null"                          # sandboxed: an opaque origin
    assert seen["stolen"] != "mr_secret" and seen["stolen"].startswith("blocked")
    tab.close()


def test_no_page_can_be_framed(context, server):
    tab = context.new_page()
    tab.goto("/ui/")
    tab.set_content(f'<iframe id="f" src="{server.url}/docs/swagger/"></iframe>'
                    '<iframe id="control" srcdoc="<div id=swagger-ui></div>"></iframe>')
    tab.wait_for_timeout(1500)
    # the control frame shows the check sees a framed document when one loads ...
    assert tab.frame_locator("#control").locator("#swagger-ui").count() == 1
    # ... and the server's page never loads in a frame (X-Frame-Options, frame-ancestors)
    assert tab.frame_locator("#f").locator("#swagger-ui").count() == 0
    tab.close()
