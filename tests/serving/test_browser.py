"""The chat page in a real headless Chromium (Debian `chromium`, driven by Playwright): ask a question,
watch the answer stream in; and the friendly notice when the service answers 503.

    .venv/bin/pytest tests/serving/test_browser.py -q
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (`apt-get install chromium`, done by .ci/run)")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield browser
        browser.close()


# Records every distinct text the answer bubble shows, so the test sees the answer grow piece by piece.
WATCH_ANSWER = """() => {
  window.__seen = [];
  new MutationObserver(() => {
    const bubbles = document.querySelectorAll('.msg.assistant');
    if (!bubbles.length) return;
    const text = bubbles[bubbles.length - 1].firstChild ? bubbles[bubbles.length - 1].firstChild.textContent : '';
    if (text && window.__seen[window.__seen.length - 1] !== text) window.__seen.push(text);
  }).observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});
}"""


def test_question_gets_a_streamed_answer(browser, live_server, tmp_path):
    page = browser.new_page()
    page.goto(live_server.url + "/")
    page.wait_for_function("document.getElementById('status').textContent === '在线'", timeout=60_000)
    assert page.locator("#notice").is_hidden()
    page.evaluate(WATCH_ANSWER)
    page.fill("#question", "公司拖欠工资怎么办？")
    page.press("#question", "Enter")
    page.wait_for_selector(".msg.assistant .copy", timeout=60_000)  # the copy button appears when done
    seen = page.evaluate("window.__seen")
    answer = page.locator(".msg.assistant").inner_text()
    assert page.locator(".msg.user").inner_text() == "公司拖欠工资怎么办？"
    assert len(seen) >= 3, f"the answer arrived in {len(seen)} piece(s), not streamed"
    assert all(seen[i + 1].startswith(seen[i]) for i in range(len(seen) - 1))  # it grew, never rewrote
    assert seen[-1] in answer
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
    # the conversation is kept: a second question sends both turns
    page.fill("#question", "需要什么证据？")
    page.press("#question", "Enter")
    page.wait_for_function("document.querySelectorAll('.msg.assistant .copy').length === 2", timeout=60_000)
    assert page.locator(".msg.user").count() == 2
    page.close()


class NeverReadyEngine:
    """An engine that never finishes loading: the server stays up and answers 503, as while paused/loading."""

    model_ids: list[str] = []
    active_batch_size = 0
    queue_depth = 0

    async def start(self) -> None:
        await asyncio.Event().wait()

    async def stop(self) -> None:
        pass


def test_service_unavailable_shows_a_friendly_notice(browser, tiny_run_dir):
    from conftest import start_server  # tests/serving/conftest.py

    from lawtune.serving.settings import ServeSettings

    live = start_server(ServeSettings(model=str(tiny_run_dir)), engine=NeverReadyEngine(), wait_ready=False)
    try:
        page = browser.new_page()
        page.goto(live.url + "/")
        page.wait_for_function("document.getElementById('status').textContent === '暂不可用'", timeout=60_000)
        assert "模型正在加载" in page.locator("#notice").inner_text()
        page.fill("#question", "你好")
        page.press("#question", "Enter")
        page.wait_for_selector(".msg.error", timeout=60_000)
        assert "服务暂时不可用" in page.locator(".msg.error").inner_text()
        assert page.locator(".msg.user").count() == 1 and page.locator(".msg.assistant").count() == 0
        page.close()
    finally:
        live.stop()
