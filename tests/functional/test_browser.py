"""The web page in a real browser: Playwright driving Debian's Chromium headless.

Plan:
1. Start a node with the real plug-in; open the page; uploading without a
   token shows the 401 message.
2. Enter the token; upload a CT slice from ../shared/data with risk factors;
   the result shows confidence, a coloured risk level, recommendations, the
   heatmap over the image and the research-use line; the block number and
   hash appear once the record is mined.
3. Open the record in the explorer, press Verify: "intact". Look the record
   up again by block number + hash; the block lists it. Verify the whole
   chain: valid. The peers tab renders.
Screenshots go to $LUNGLEDGER_SCREENSHOTS (default: the test's tmp dir).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support.api import make_node_dir, require_models, running_node, sample_image

CHROMIUM = Path(os.environ.get("LUNGLEDGER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000

pytestmark = pytest.mark.browser


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("LUNGLEDGER_SCREENSHOTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def test_upload_ct_see_block_and_verify(tmp_path: Path, screenshots: Path) -> None:
    require_models("ct")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright, expect

    async with running_node(make_node_dir(tmp_path, "St. Mary's Hospital"), plugin="mobilenetv2") as node:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1360, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(node.url + "/")
            await expect(page.locator("#node-name")).to_contain_text("St. Mary's Hospital")
            await expect(page.locator(".disclaimer").first).to_have_text("Research use only — not for diagnostic use")

            # 1. no token yet: the node refuses and the page says what to do
            await page.set_input_files("#ct-input", str(sample_image("ct")))
            await page.click("#diagnose-button")
            await expect(page.locator("#diagnose-state")).to_contain_text("enter the token")

            # 2. token, risk factors, upload
            await page.fill("#token-input", node.token)
            await page.click("#token-form button")
            await expect(page.locator("#token-state")).to_have_text("token set")
            await page.fill("#age-input", "67")
            await page.select_option("#smoking-input", "current")
            await page.select_option("#family-input", "true")
            await page.fill("#patient-input", "MRN-0042")
            await page.click("#diagnose-button")
            await expect(page.locator("#result")).to_be_visible()
            await expect(page.locator("#result-confidence")).to_have_text(re.compile(r"^\d+ %$"))
            await expect(page.locator("#result-risk")).to_have_class(re.compile(r"risk-(high|moderate|low)"))
            await expect(page.locator("#result-recommendations li").first).to_be_visible()
            await expect(page.locator("#result-disclaimer")).to_have_text("Research use only — not for diagnostic use")
            await expect(page.locator(".modality[data-modality='ct'] img.overlay")).to_be_visible()
            await expect(page.locator("#result-block-hash")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
            block_hash = await page.locator("#result-block-hash").text_content()
            block_height = await page.locator("#result-block-height").text_content()
            record_id = (await page.locator("#result-record").text_content() or "").removeprefix("record ")
            _, on_chain = await node.get(f"/api/v1/records/{record_id}")
            assert (on_chain["block_hash"], str(on_chain["block_height"])) == (block_hash, block_height)
            await page.screenshot(path=str(screenshots / "diagnose.png"), full_page=True)

            # 3. explorer: open the record, verify it
            await page.click("#result-open-record")
            await expect(page.locator("#record-detail")).to_be_visible()
            await expect(page.locator("#record-detail-fields")).to_contain_text(record_id)
            await page.click("#record-verify-button")
            await expect(page.locator("#record-verify-result")).to_contain_text("intact")
            await expect(page.locator("#blocks-body tr").first).to_contain_text(str(block_height))
            await page.screenshot(path=str(screenshots / "explorer.png"), full_page=True)

            # look-up by block number + hash, then the whole chain
            await page.fill("#lookup-record", "")
            await page.fill("#lookup-height", str(block_height))
            await page.fill("#lookup-hash", str(block_hash))
            await page.click("#lookup-form button[type=submit]")
            await expect(page.locator("#block-detail-records")).to_contain_text(record_id)
            await page.click("#chain-verify-button")
            await expect(page.locator("#chain-verify-state")).to_contain_text("Valid")
            await page.fill("#lookup-hash", "ab" * 32)
            await page.click("#lookup-form button[type=submit]")
            await expect(page.locator("#lookup-state")).to_contain_text("not the one given")

            await page.click("#tab-peers")
            await expect(page.locator("#members-list")).to_contain_text("St. Mary's Hospital")
            await page.screenshot(path=str(screenshots / "peers.png"), full_page=True)
            await browser.close()
            assert errors == []
