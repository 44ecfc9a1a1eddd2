"""The page as a radiologist's and an auditor's workstation, in Chromium at 1366x900 and 390x844.

Plan:
1. Signed out, the diagnose and worklist tabs show only the sign-in form;
   explorer and peers stay open. Keyboard only: sign in, run a diagnosis,
   open its record in the explorer and verify it (check by check), move
   across the tabs with the arrow keys.
2. A DICOM file without an extension: its key tags show before the upload,
   and the result shows its windowed greyscale image under the heatmap,
   with opacity, zoom and pan.
3. Worklists: alice sees and reopens her diagnosis; bob sees none of hers;
   carol (administrator) sees everyone's and the audit log, whose hash chain
   is intact. The printable report shows finding, reasoning, models, block
   and a verify link.
4. Explorer: pages through a chain longer than one page, deep links
   #/block/N and #/record/ID, a new block appears live (server-sent events).
   Peers: this node is an online member.
5. axe-core: no serious or critical violations on each screen at both sizes
   (and in dark mode); no sideways scroll at 390 and 360 px. Screenshots into
   docs/screenshots.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from node.app import CHAIN, MINER
from tests.conftest import DATA_DIR
from tests.functional.browser_support import (
    PASSWORD,
    VIEWPORTS,
    add_users,
    axe_violations,
    browser_page,
    horizontal_overflow,
    screenshot_dir,
    sign_in,
)
from tests.support.api import (
    make_node_dir,
    require_models,
    running_node,
    sample_image,
    wait_until,
)
from tests.functional.test_api_routes import make_signed_record

pytestmark = pytest.mark.browser


async def check_screen(page: Any, name: str, viewport: str) -> None:
    """No serious/critical axe violation, no sideways scroll, and a screenshot."""
    violations = await axe_violations(page)
    assert violations == [], f"{name} ({viewport}): {violations}"
    assert await horizontal_overflow(page) <= 0, f"{name} ({viewport}) scrolls sideways"
    await page.screenshot(path=str(screenshot_dir() / f"{name}-{viewport}.png"), full_page=True)


async def press_until_focused(page: Any, selector: str, limit: int = 60) -> None:
    """Tab forward until the element has focus (a keyboard user's walk)."""
    for _ in range(limit):
        if await page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"{selector} is not reachable with the Tab key")


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
async def test_keyboard_walk_sign_in_diagnose_explore_verify(tmp_path: Path, viewport: str) -> None:
    require_models("ct")
    from playwright.async_api import expect

    errors: list[str] = []
    data_dir = make_node_dir(tmp_path, "St. Mary's Hospital")
    add_users(data_dir, ("alice", "user"))
    async with running_node(data_dir, plugin="mobilenetv2") as node, browser_page(VIEWPORTS[viewport], errors) as page:
        await page.goto(node.url + "/")
        await expect(page.locator("#signin")).to_be_visible()
        await expect(page.locator("#panel-diagnose")).to_be_hidden()
        await expect(page.locator(".disclaimer").first).to_have_text("Research use only — not for diagnostic use")
        await check_screen(page, "sign-in", viewport)

        await press_until_focused(page, "#signin-user")
        await page.keyboard.type("alice")
        await page.keyboard.press("Tab")
        await page.keyboard.type(PASSWORD)
        await page.keyboard.press("Enter")
        await expect(page.locator("#account-name")).to_have_text("Signed in as alice")
        await expect(page.locator("#panel-diagnose")).to_be_visible()

        await page.set_input_files("#ct-input", str(sample_image("ct")))  # the file chooser itself is the OS's
        await page.focus("#ct-input")
        await press_until_focused(page, "#age-input")
        await page.keyboard.type("64")
        await press_until_focused(page, "#diagnose-button")
        await page.keyboard.press("Enter")
        await expect(page.locator("#result")).to_be_visible()
        await expect(page.locator("#diagnose-state")).to_contain_text("Record stored")
        await expect(page.locator("#result-finding")).to_have_text(re.compile("^(Findings suggest cancer|No finding)$"))
        await expect(page.locator("#result-block-hash")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
        record_id = (await page.locator("#result-record").text_content() or "").removeprefix("record ")
        await check_screen(page, "diagnose-result", viewport)

        await press_until_focused(page, "#result-open-record")
        await page.keyboard.press("Enter")
        await expect(page.locator("#record-detail")).to_be_visible()
        await expect(page.locator("#record-verify-result")).to_contain_text("intact")
        await expect(page.locator("#record-verify-result li[data-check='signature']")).to_contain_text("passed")
        await expect(page.locator("#record-verify-result li[data-check='merkle_proof']")).to_contain_text("passed")
        await expect(page.locator("#record-verify-result li[data-check='commitment_matches_chain']")).to_contain_text("passed")
        assert page.url.endswith(f"#/record/{record_id}")
        await press_until_focused(page, "#chain-verify-button")
        await page.keyboard.press("Enter")
        await expect(page.locator("#chain-verify-state")).to_contain_text("Valid")
        await check_screen(page, "explorer", viewport)

        # ARIA tabs: arrow keys move between tabs and select them
        await page.focus("#tab-explorer")
        await page.keyboard.press("ArrowRight")
        await expect(page.locator("#tab-peers")).to_be_focused()
        await expect(page.locator("#tab-peers")).to_have_attribute("aria-selected", "true")
        await expect(page.locator("#members-body")).to_contain_text("St. Mary's Hospital (this node)")
        await expect(page.locator("#members-body tr").first).to_contain_text("online")
        await check_screen(page, "peers", viewport)
        await page.keyboard.press("Home")
        await expect(page.locator("#tab-diagnose")).to_have_attribute("aria-selected", "true")
        # the focus ring is drawn (3 px) and not the browser default
        outline = await page.evaluate("getComputedStyle(document.activeElement).outlineWidth")
        assert outline == "3px"
    assert errors == []


async def test_dicom_without_extension_shows_image_and_tags(tmp_path: Path) -> None:
    require_models("ct")
    from playwright.async_api import expect

    errors: list[str] = []
    dicom = tmp_path / "IM0001"  # extension-less, as PACS exports often are
    shutil.copy(sorted((DATA_DIR / "dicom").glob("*.dcm"))[0], dicom)
    data_dir = make_node_dir(tmp_path)
    add_users(data_dir, ("alice", "user"))
    async with running_node(data_dir, plugin="mobilenetv2") as node, browser_page(VIEWPORTS["desktop"], errors) as page:
        await sign_in(page, node.url, "alice")
        await page.set_input_files("#ct-input", str(dicom))
        await expect(page.locator("#ct-tags")).to_be_visible()
        await expect(page.locator("#ct-tags")).to_contain_text("CT")
        await expect(page.locator("#ct-tags")).to_contain_text("mm")
        await expect(page.locator("#ct-tags")).to_contain_text("centre")
        await page.click("#diagnose-button")
        await expect(page.locator("#result")).to_be_visible()
        base = page.locator(".modality[data-modality='ct'] img.base")
        await expect(base).to_be_visible()
        assert (await base.get_attribute("src") or "").startswith("data:image/png;base64,")
        assert await base.evaluate("img => img.naturalWidth > 0")
        await expect(page.locator(".modality[data-modality='ct'] figcaption")).to_contain_text("DICOM")
        await expect(page.locator(".modality[data-modality='ct'] figcaption .tags")).to_contain_text("Slice thickness")
        assert "Lung_Dx" not in await page.locator("body").inner_text()  # no patient id from the header
        heat = page.locator(".modality[data-modality='ct'] img.heat")
        await page.locator("input[aria-label='CT slice heatmap opacity']").fill("20")
        assert await heat.evaluate("img => img.style.opacity") == "0.2"
        await page.click("button[aria-label='Zoom in on the CT slice']")
        await expect(page.locator(".modality[data-modality='ct'] .zoom-level")).to_have_text("125 %")
        frame = page.locator(".modality[data-modality='ct'] .frame")
        await frame.focus()
        await page.keyboard.press("ArrowLeft")
        assert "translate(20px, 0px)" in await page.locator(".modality[data-modality='ct'] .stage").first.evaluate("s => s.style.transform")
        await page.screenshot(path=str(screenshot_dir() / "dicom-viewer-desktop.png"), full_page=True)
    assert errors == []


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
async def test_worklists_audit_and_report(tmp_path: Path, viewport: str) -> None:
    require_models("ct")
    from playwright.async_api import expect

    errors: list[str] = []
    data_dir = make_node_dir(tmp_path)
    add_users(data_dir, ("alice", "user"), ("bob", "user"), ("carol", "admin"))
    async with running_node(data_dir, plugin="mobilenetv2") as node, browser_page(VIEWPORTS[viewport], errors) as page:
        await sign_in(page, node.url, "alice")
        await page.set_input_files("#ct-input", str(sample_image("ct")))
        await page.fill("#patient-input", "MRN-7")
        await page.click("#diagnose-button")
        await expect(page.locator("#result")).to_be_visible()
        record_id = (await page.locator("#result-record").text_content() or "").removeprefix("record ")
        finding = await page.locator("#result-finding").text_content()
        await page.click("#new-patient-result")

        await page.click("#tab-worklist")
        await expect(page.locator("#worklist-body tr")).to_have_count(1)
        await expect(page.locator(f"#worklist-body tr[data-record='{record_id}']")).to_contain_text("alice")
        await page.fill("#worklist-patient", "MRN-8")
        await page.click("#worklist-form button[type=submit]")
        await expect(page.locator("#worklist-body")).to_contain_text("No diagnoses match")
        await page.fill("#worklist-patient", "MRN-7")
        await page.click("#worklist-form button[type=submit]")
        await expect(page.locator("#worklist-body tr")).to_have_count(1)
        await check_screen(page, "worklist", viewport)
        await page.click(f"#worklist-body tr[data-record='{record_id}'] a.open-link")
        await expect(page.locator("#result")).to_be_visible()
        await expect(page.locator("#result-finding")).to_have_text(finding or "")
        await expect(page.locator(".modality[data-modality='ct'] img.heat")).to_be_visible()
        await expect(page.locator("#result-operator")).to_contain_text("alice")

        await page.click("#result-report")
        await expect(page.locator("#panel-report")).to_be_visible()
        await expect(page.locator("#report-fields")).to_contain_text(finding or "")
        await expect(page.locator("#report-reasoning")).to_contain_text("Fused image score")
        await expect(page.locator("#report-models")).to_contain_text("sha256")
        await expect(page.locator("#report-chain")).to_contain_text(f"#/record/{record_id}")
        await expect(page.locator("#panel-report .disclaimer")).to_contain_text("Research use only")
        await expect(page.locator("#report-qr svg path")).to_have_count(1)
        assert (await page.locator("#report-qr").get_attribute("data-url") or "").endswith(f"#/record/{record_id}")
        await check_screen(page, "report", viewport)
        await page.emulate_media(media="print")
        await expect(page.locator(".topbar")).to_be_hidden()
        await page.emulate_media(media="screen")

        await page.click("#sign-out")
        await expect(page.locator("#signin")).to_be_visible()
        assert record_id not in await page.locator("body").inner_text()
        await sign_in(page, node.url, "bob")
        await page.click("#tab-worklist")
        await expect(page.locator("#worklist-body")).to_contain_text("No diagnoses match")
        await expect(page.locator("#worklist-scope-label")).to_be_hidden()
        await expect(page.locator("#tab-audit")).to_be_hidden()
        await page.goto(f"{node.url}/#/open/{record_id}")
        await expect(page.locator("#diagnose-state")).to_contain_text("another user")
        await expect(page.locator("#result")).to_be_hidden()

        await page.click("#sign-out")
        await sign_in(page, node.url, "carol")
        await page.click("#tab-worklist")
        await page.select_option("#worklist-scope", "all")
        await page.click("#worklist-form button[type=submit]")
        await expect(page.locator(f"#worklist-body tr[data-record='{record_id}']")).to_be_visible()
        await page.click("#tab-audit")
        await expect(page.locator("#audit-state")).to_contain_text("Hash chain intact")
        await expect(page.locator("#audit-body")).to_contain_text("diagnose")
        await expect(page.locator("#audit-body")).to_contain_text("bob")
        await check_screen(page, "audit", viewport)
    assert errors == []


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
async def test_explorer_pages_deep_links_and_live_tip(tmp_path: Path, viewport: str) -> None:
    from playwright.async_api import expect

    errors: list[str] = []
    async with running_node(make_node_dir(tmp_path), plugin="none") as node, browser_page(VIEWPORTS[viewport], errors) as page:
        chain = node.app[CHAIN]
        records = []
        for number in range(18):  # one record per block: a chain longer than one page of 15
            record = make_signed_record(node, number)
            records.append(record)
            await chain.add_pending_record(record)
            node.app[MINER].wake()
            await wait_mined(chain)
        height = chain.view.height
        assert height >= 16
        await page.goto(f"{node.url}/#/explorer")
        await expect(page.locator("#live-state")).to_have_text("live")
        await expect(page.locator("#blocks-body tr").first).to_have_attribute("data-height", str(height))
        await page.click("#blocks-oldest")
        await expect(page.locator("#blocks-body tr").last).to_have_attribute("data-height", "0")
        await page.click("#blocks-newer")
        await expect(page.locator("#blocks-range")).to_contain_text(f"of {height + 1}")
        await page.click("#blocks-newest")
        await expect(page.locator("#blocks-body tr").first).to_have_attribute("data-height", str(height))

        # a new block shows up without a click
        await chain.add_pending_record(make_signed_record(node, 99))
        node.app[MINER].wake()
        await expect(page.locator("#blocks-body tr").first).to_have_attribute("data-height", str(height + 1), timeout=60_000)
        await expect(page.locator("#status-height")).to_have_text(str(height + 1))

        await page.goto(f"{node.url}/#/block/3")
        await expect(page.locator("#block-detail-height")).to_have_text("#3")
        await expect(page.locator("#block-detail-fields button.copy").first).to_be_visible()
        record_id = records[0].record_id.hex()
        await page.goto(f"{node.url}/#/record/{record_id}")
        await expect(page.locator("#record-verify-result")).to_contain_text("no-local-details")
        await expect(page.locator("#record-verify-result")).to_contain_text("normal for another hospital's record")
        await expect(page.locator("#record-detail-fields")).to_contain_text("Fused image score")
        await check_screen(page, "explorer-record", viewport)
        await page.emulate_media(color_scheme="dark")  # dark mode keeps its contrast and focus ring
        assert await page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 20, 26)"
        await check_screen(page, "explorer-record-dark", viewport)
        await page.emulate_media(color_scheme="light")
        if viewport == "phone":
            await page.set_viewport_size({"width": 360, "height": 780})
            assert await horizontal_overflow(page) <= 0
    assert errors == []


async def wait_mined(chain: Any) -> None:
    async def mined() -> bool:
        return chain.view.pending_count == 0

    await wait_until(mined, timeout=60)
