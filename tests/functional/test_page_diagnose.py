"""The diagnose screen in Chromium: the image finding comes from the images, and no patient carries over.

Plan:
1. Start a node with the real plug-in; alice signs in through the page.
2. Upload one CT slice without risk factors, then (after "New patient") the
   same slice with the strongest risk factors: the image finding, the image
   score and its confidence are the same; the reasoning lists each factor's
   contribution and the risk score moved. The on-chain record holds the
   finding the page showed.
3. After a result the form is empty; an upload that fails (a text file
   posing as a PNG) leaves nothing of the previous patient on screen or in
   the form, and the error is announced in a live region.
Both at 1366x900 and 390x844.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.functional.browser_support import (
    VIEWPORTS,
    add_users,
    browser_page,
    screenshot_dir,
    sign_in,
)
from tests.support.api import (
    make_node_dir,
    require_models,
    running_node,
    sample_image,
)

pytestmark = pytest.mark.browser


async def diagnose(page: Any, image: Path, age: str = "", smoking: str = "", family: str = "",
                   patient: str = "") -> str:
    """Fill the form, run it, wait for the result; returns the record id."""
    await page.set_input_files("#ct-input", str(image))
    await page.fill("#age-input", age)
    await page.select_option("#smoking-input", smoking)
    await page.select_option("#family-input", family)
    await page.fill("#patient-input", patient)
    await page.click("#diagnose-button")
    from playwright.async_api import expect

    await expect(page.locator("#result")).to_be_visible()
    return (await page.locator("#result-record").text_content() or "").removeprefix("record ")


async def form_values(page: Any) -> list[str]:
    return await page.evaluate("""() => ['#age-input', '#smoking-input', '#family-input', '#patient-input',
        '#ct-input', '#xray-input'].map(s => document.querySelector(s).value)""")


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
async def test_risk_factors_never_change_the_image_finding(tmp_path: Path, viewport: str) -> None:
    require_models("ct")
    from playwright.async_api import expect

    errors: list[str] = []
    image = sample_image("ct", "normal")
    data_dir = make_node_dir(tmp_path, "St. Mary's Hospital")
    add_users(data_dir, ("alice", "user"))
    async with running_node(data_dir, plugin="mobilenetv2") as node, browser_page(VIEWPORTS[viewport], errors) as page:
        await sign_in(page, node.url, "alice")
        plain_id = await diagnose(page, image)
        plain = {key: await page.locator(selector).text_content() for key, selector in
                 (("finding", "#result-finding"), ("fused", "#reasoning-fused"), ("because", "#reasoning-finding"))}
        plain_risk = await page.locator("#reasoning-risk").text_content()
        await expect(page.locator("#reasoning-factors tr[data-factor='age'] td").nth(2)).to_have_text("+0.00")

        await page.click("#new-patient-result")
        await expect(page.locator("#result")).to_be_hidden()
        risky_id = await diagnose(page, image, age="80", smoking="current", family="true", patient="MRN-0042")
        risky = {key: await page.locator(selector).text_content() for key, selector in
                 (("finding", "#result-finding"), ("fused", "#reasoning-fused"), ("because", "#reasoning-finding"))}
        assert risky == plain and plain["finding"] in ("Findings suggest cancer", "No finding")
        for factor, contribution in (("age", "+0.50"), ("smoking", "+0.50"), ("family_history", "+0.25")):
            await expect(page.locator(f"#reasoning-factors tr[data-factor='{factor}'] td").nth(2)).to_have_text(contribution)
        await expect(page.locator("#reasoning-factors tr.total")).to_contain_text("capped")
        await expect(page.locator("#reasoning-factors tr.total td").nth(2)).to_have_text("+1.00")
        assert await page.locator("#reasoning-risk").text_content() != plain_risk
        await expect(page.locator("#result-risk")).to_have_class(re.compile(r"risk-(high|moderate|low)"))
        await expect(page.locator("#result-disclaimer")).to_have_text("Research use only — not for diagnostic use")
        await page.screenshot(path=str(screenshot_dir() / f"diagnose-{viewport}.png"), full_page=True)

        # what the chain holds is what the clinician saw
        for record_id in (plain_id, risky_id):
            _, reply = await node.get(f"/api/v1/diagnoses/{record_id}", headers=node.auth)
            label = reply["result"]["label"]
            assert {"affected": "Findings suggest cancer", "normal": "No finding"}[label] == plain["finding"]
            _, on_chain = await node.get(f"/api/v1/records/{record_id}")
            assert on_chain["record"]["label"] == label
    assert errors == []


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
async def test_no_previous_patient_after_a_result_or_an_error(tmp_path: Path, viewport: str) -> None:
    require_models("ct")
    from playwright.async_api import expect

    errors: list[str] = []
    not_an_image = tmp_path / "scan.png"
    not_an_image.write_text("this is not an image")
    data_dir = make_node_dir(tmp_path)
    add_users(data_dir, ("alice", "user"))
    async with running_node(data_dir, plugin="mobilenetv2") as node, browser_page(VIEWPORTS[viewport], errors) as page:
        await sign_in(page, node.url, "alice")
        record_id = await diagnose(page, sample_image("ct"), age="67", smoking="current", family="true",
                                   patient="MRN-0042")
        await expect(page.locator("#result-patient")).to_contain_text("MRN-0042")
        assert await form_values(page) == ["", "", "", "", "", ""]  # nothing pre-filled for the next patient
        await expect(page.locator("#ct-name")).to_have_text("no file chosen")

        await page.set_input_files("#ct-input", str(not_an_image))
        await page.fill("#age-input", "45")
        await page.fill("#patient-input", "MRN-0043")
        await page.click("#diagnose-button")
        await expect(page.locator("#diagnose-state")).to_contain_text("Nothing was recorded")
        await expect(page.locator("#diagnose-state")).to_have_attribute("aria-live", "polite")
        await expect(page.locator("#result")).to_be_hidden()
        body = await page.locator("body").inner_text()
        for trace in (record_id, "MRN-0042", "MRN-0043", "High risk", "Moderate risk", "Low risk"):
            assert trace not in body
        assert await form_values(page) == ["", "", "", "", "", ""]
        await page.screenshot(path=str(screenshot_dir() / f"diagnose-error-{viewport}.png"), full_page=True)
    assert errors == []
