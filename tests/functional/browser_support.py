"""Shared pieces of the page tests: Debian's Chromium under Playwright, the two viewports, axe-core,
screenshots into docs/screenshots (or $LUNGLEDGER_SCREENSHOTS), and the sign-in steps."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

CHROMIUM = Path(os.environ.get("LUNGLEDGER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}
AXE_VERSION = "4.14.1"
AXE_DIR = Path(os.environ.get("LUNGLEDGER_AXE_DIR", REPO_ROOT / ".cache" / "axe"))


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("LUNGLEDGER_SCREENSHOTS", REPO_ROOT / "docs" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")


def axe_script() -> str:
    """axe-core's browser bundle from npm (installed once into .cache/axe with the ordinary npm client)."""
    bundle = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not bundle.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("axe-core is not installed and npm is missing (apt-get install npm)")
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(AXE_DIR), f"axe-core@{AXE_VERSION}"],
                       check=True, capture_output=True, timeout=300)
    return bundle.read_text()


@contextlib.asynccontextmanager
async def browser_page(viewport: dict[str, int], errors: list[str]) -> AsyncIterator[Any]:
    """A fresh Chromium page of the given size; uncaught page errors are collected into ``errors``."""
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport=viewport)
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page
        finally:
            await browser.close()


async def axe_violations(page: Any, minimum: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """Run axe-core in the page; returns the violations at the given impacts (id, impact, targets)."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        # Through the DevTools protocol, which the page's Content-Security-Policy (rightly) does not cover;
        # a <script> tag would be refused by it.
        await page.evaluate(axe_script() + "\n;true")
    result = await page.evaluate("async () => (await axe.run(document)).violations.map(v => "
                                 "({id: v.id, impact: v.impact, help: v.help, "
                                 "targets: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))")
    return [item for item in result if item["impact"] in minimum]


async def horizontal_overflow(page: Any) -> int:
    """How many CSS pixels the page is wider than the viewport (0: no sideways scroll)."""
    return int(await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"))


PASSWORD = "correct horse battery"


def add_users(data_dir: Path, *users: tuple[str, str]) -> None:
    """Accounts (name, role) on a node's data directory, before the node starts, all with PASSWORD."""
    from node.users import open_account_store

    accounts = open_account_store(data_dir)
    try:
        for name, role in users:
            accounts.add_user(name, PASSWORD, role)
    finally:
        accounts.close()


async def sign_in(page: Any, url: str, username: str) -> None:
    """Open the page and sign in through its form."""
    from playwright.async_api import expect

    await page.goto(url + "/")
    await page.fill("#signin-user", username)
    await page.fill("#signin-password", PASSWORD)
    await page.click("#signin-button")
    await expect(page.locator("#account-name")).to_contain_text(f"Signed in as {username}")
