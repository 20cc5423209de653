"""The chat page follows the kill switch: paused → the input is hidden and the notice shown; resumed → back.
Real headless Chromium (Debian `chromium`, driven by Playwright) against a real server on loopback.

    .venv/bin/pytest tests/serving/test_gateway_browser.py -q
"""

from __future__ import annotations

import httpx
from live_server import start_server
from test_browser import ARGS, CHROMIUM, pytestmark  # noqa: F401  (the same browser, its flags and skip rule)

from lawtune.serving.gateway.settings import GatewaySettings


def test_chat_page_hides_the_input_while_paused(tiny_run_dir):
    from playwright.sync_api import sync_playwright

    from lawtune.serving.settings import ServeSettings

    server = start_server(ServeSettings(model=str(tiny_run_dir), dtype="float32", serve_base=False, default_max_tokens=8,
                                           gateway=GatewaySettings(open_access=True)))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
            page = browser.new_page()
            page.goto(server.url + "/")
            page.wait_for_function("document.getElementById('status').textContent === '在线'")
            assert page.locator("#ask").is_visible() and page.locator("#notice").is_hidden()

            httpx.post(server.url + "/admin/pause", json={"notice": "系统升级中，预计 30 分钟后恢复。"}, timeout=10)
            page.wait_for_function("document.getElementById('ask').hidden", timeout=10_000)  # polled every 2 s
            assert not page.locator("#ask").is_visible()
            assert page.locator("#notice").inner_text() == "系统升级中，预计 30 分钟后恢复。"
            assert page.locator("#status").inner_text() == "已暂停"

            httpx.post(server.url + "/admin/resume", timeout=10)
            page.wait_for_function("!document.getElementById('ask').hidden", timeout=10_000)
            assert page.locator("#ask").is_visible() and page.locator("#notice").is_hidden()
            browser.close()
    finally:
        server.stop()
