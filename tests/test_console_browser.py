"""The web console (API.md 8) in a real browser: Debian's Chromium driven by Playwright for Python.

Playwright's own browser download cannot work offline, so the tests launch /usr/bin/chromium (which
.ci/run installs from Debian's `chromium` package). Every test fails on a browser console error or
warning and on an uncaught page error, with one exception: the browser's own network line for a
refusal that the test provokes and declares (a wrong key's 401, a plain key's 403 on the admin
routes). Those are the gateway's answers, which the page must show in words instead.

Set CONSOLE_SCREENSHOTS to a folder (docs/console) to save the main pages there as PNG files.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from llm_gateway.store.base import UsageRecord
from tests.platform_client import ADMIN, chat, data, get, post

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SHOTS = os.environ.get("CONSOLE_SCREENSHOTS")
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: apt-get install chromium (.ci/run does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


class Console:
    """One browser tab on the console, keeping what the browser reported."""

    def __init__(self, page, gateway) -> None:
        self.page = page
        self.gateway = gateway
        self.problems: list[str] = []
        self.refusals: set[int] = set()  # statuses whose network error line the test expects
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))

    def _console(self, message) -> None:
        if message.type not in ("error", "warning"):
            return
        refused = re.fullmatch(r"Failed to load resource: the server responded with a status of (\d+) .*",
                               message.text)
        url = message.location.get("url", "")
        if refused and int(refused[1]) in self.refusals and url.startswith(self.gateway.url + "/api/"):
            return
        self.problems.append(f"console {message.type}: {message.text} ({url})")

    def expect_refusal(self, status: int) -> None:
        self.refusals.add(status)

    def open(self, view: str = "") -> None:
        self.page.goto(self.gateway.url + "/console" + (f"#{view}" if view else ""))
        self.page.wait_for_selector("#loading", state="hidden")

    def sign_in(self, key: str) -> None:
        self.open()
        self.page.locator("#key-input").fill(key)
        self.page.keyboard.press("Enter")
        self.page.wait_for_selector("#nav", state="visible")

    def go(self, view: str) -> None:
        self.page.click(f'#nav a[data-view="{view}"]')
        self.page.wait_for_selector(f"#view-{view}", state="visible")

    def message(self) -> str:
        self.page.wait_for_selector("#message", state="visible")
        return self.page.inner_text("#message-text")

    def cards(self, selector: str) -> dict[str, str]:
        self.page.wait_for_selector(f"{selector} dd")
        terms = self.page.locator(f"{selector} dt").all_inner_texts()
        return dict(zip(terms, self.page.locator(f"{selector} dd").all_inner_texts()))

    def shot(self, name: str) -> None:
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


@pytest.fixture
def open_console(browser, gateway):
    """Opens console tabs (desktop-sized unless told), each in a fresh browser profile; fails the test
    on what any of them reported."""
    opened: list[tuple] = []

    def start(viewport: dict | None = None, **options) -> Console:
        context = browser.new_context(viewport=viewport or DESKTOP, timezone_id="UTC", locale="en-US", **options)
        console = Console(context.new_page(), gateway)
        opened.append((context, console))
        return console

    yield start
    problems = [p for _, console in opened for p in console.problems]
    for context, _ in opened:
        context.close()
    assert problems == []


@pytest.fixture
def console(open_console) -> Console:
    return open_console()


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


# --- what is served --------------------------------------------------------------------------------

def test_the_console_is_served_self_contained_under_a_strict_policy(gateway):
    page = httpx.get(gateway.url + "/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert {"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
            "frame-ancestors 'none'"} <= {p.strip() for p in policy.split(";")}
    assert "set-cookie" not in page.headers
    html = page.text
    assert '<meta name="viewport"' in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline script"
    assert not re.search(r"\s(on\w+|style)\s*=", html), "an inline handler or style"
    files = {name: httpx.get(f"{gateway.url}/console/{name}") for name in ("console.js", "console.css")}
    assert files["console.js"].headers["content-type"].startswith("text/javascript")
    assert files["console.css"].headers["content-type"].startswith("text/css")
    for text in (html, *(f.text for f in files.values())):
        names = text.replace("http://www.w3.org/2000/svg", "")  # SVG's namespace name, not an address
        assert not re.search(r"https?://", names), "nothing is fetched from another origin"
        assert "cookie" not in text.lower()
    assert httpx.get(gateway.url + "/console/secrets.txt").status_code == 404


# --- signing in ------------------------------------------------------------------------------------

def test_signing_in_with_an_admin_key_shows_balance_tier_and_membership(gateway, console):
    user_id = gateway.user(balance="12.5", tier="vip", membership_days=30)
    admin = gateway.key(user_id, is_admin=True)
    console.open()
    console.page.keyboard.type(admin)  # the key field has the focus: the keyboard alone signs in
    console.page.keyboard.press("Enter")
    overview = console.cards("#overview-account")
    expiry = gateway.store.get_user(user_id).membership_expire_at
    assert overview == {"Balance": "12.5 USD", "Tier": "vip", "Effective tier": "vip",
                        "Membership expires": datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}
    assert console.page.is_visible('#nav a[data-view="keys"]')
    console.shot("overview")

    console.page.reload()  # the tab stays signed in
    assert console.cards("#overview-account")["Balance"] == "12.5 USD"
    console.page.click("#sign-out")
    assert console.page.is_visible("#view-sign-in")
    assert console.page.evaluate("sessionStorage.length") == 0
    assert console.page.evaluate("document.cookie") == ""


def test_a_wrong_key_is_refused_in_words(gateway, console):
    console.expect_refusal(401)
    console.open()
    console.page.fill("#key-input", "sk-" + "x" * 45)
    console.page.click("#sign-in-button")
    message = console.message()
    assert "refused this key" in message and "Invalid API key" in message
    assert console.page.is_visible("#view-sign-in") and not console.page.is_visible("#nav")
    console.page.fill("#key-input", "")
    console.page.click("#sign-in-button")
    assert console.page.inner_text("#message-text") == "Paste an API key first."


def test_a_plain_key_reads_usage_and_rates_and_is_told_what_needs_an_admin_key(gateway, console):
    console.expect_refusal(403)  # the balance route, which tells the console it is not an admin key
    priced = gateway.model(provider="mock", input="2.5", output="10")
    console.sign_in(gateway.key(gateway.user()))
    console.page.wait_for_selector("#overview-admin-note", state="visible")
    assert "need an admin key" in console.page.inner_text("#overview-admin-note")
    assert console.page.is_hidden('#nav a[data-view="keys"]')
    console.go("rates")
    total = len(gateway.runtime.catalogs.current().models)
    assert console.page.inner_text("#rates-count") == f"{total} models of {total}"
    console.page.fill("#rates-search", priced)
    assert console.page.inner_text("#rates-count") == f"1 model of {total}"
    (row,) = console.page.locator("#rates-table tbody tr").all()
    assert row.locator("td").all_inner_texts()[:5] == [priced, "chat", "mock", "2.5", "10"]
    console.page.fill("#rates-search", "mock image")
    assert set(console.page.locator("#rates-table tbody td:first-child").all_inner_texts()) == {"mock-image"}
    console.page.fill("#rates-search", "gpt-4o")
    console.shot("rates")


def test_a_key_disabled_meanwhile_ends_the_session_in_words(gateway, console):
    console.expect_refusal(401)
    user_id = gateway.user()
    console.sign_in(gateway.key(user_id, is_admin=True))
    # the overview's own reads done first: a read still under way when the key is disabled would end
    # the session before the click below could be made
    console.page.wait_for_load_state("networkidle")
    (key,) = gateway.store.list_keys(user_id)
    gateway.store.update_key(key.key_id, is_disabled=True)
    gateway.forget_caches()
    console.page.click('#nav a[data-view="usage"]')
    assert "refused this key" in console.message()
    console.page.wait_for_selector("#view-sign-in", state="visible")


# --- usage -----------------------------------------------------------------------------------------

def test_a_model_call_shows_in_the_records_and_the_chart(gateway, console):
    priced = gateway.model(provider="mock", input="2.5", output="10")
    user_id = gateway.user(balance="5")
    admin = gateway.key(user_id, is_admin=True)
    console.sign_in(admin)
    console.go("usage")
    console.page.wait_for_selector("#usage-records tbody td.empty")

    assert chat(gateway.url, admin, priced).status_code == 200
    (record,) = data(get(gateway.url, "/api/v1/user/usage", admin))["records"]
    assert float(record["cost"]) > 0
    console.page.click('#usage-filters button[type="submit"]')
    row = console.page.locator("#usage-records tbody tr").first
    row.locator(f"td:text-is('{priced}')").wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[1:4] == [priced, record["route"], record["key_id"]] and cells[6] == record["cost"]
    assert console.page.inner_text("#records-page") == "1–1 of 1"

    spend = console.page.locator(f'svg[data-chart="spend"] rect[data-key="{today()}"]')
    requests = console.page.locator(f'svg[data-chart="requests"] rect[data-key="{today()}"]')
    assert float(spend.get_attribute("data-value")) == float(record["cost"])
    assert float(spend.get_attribute("height")) > 0
    assert spend.locator("title").text_content() == f"{today()}: {record['cost']} USD"
    assert requests.get_attribute("data-value") == "1"
    assert console.page.locator('svg[data-chart="spend"] rect').count() == 30  # every day of the range
    assert console.cards("#usage-sum")["Requests"] == "1"
    console.shot("usage")

    console.page.select_option("#usage-group", "model")
    console.page.click('#usage-filters button[type="submit"]')
    by_model = console.page.locator(f'svg[data-chart="requests"] rect[data-key="{priced}"]')
    by_model.wait_for()
    assert by_model.get_attribute("data-value") == "1"


def test_the_records_page_by_cursor_and_filter_by_model(gateway, console):
    user_id = gateway.user()
    key = gateway.key(user_id)
    (stored,) = gateway.store.list_keys(user_id)
    now = datetime.now(UTC).timestamp()
    for n in range(12):
        gateway.store.settle(UsageRecord(request_id=f"req_{uuid.uuid4().hex}", user_id=user_id, key_id=stored.key_id,
                                         model="m-odd" if n % 2 else "m-even", created_at=now - 60 * n, cost=1000))
    console.expect_refusal(403)
    console.sign_in(key)
    console.go("usage")
    console.page.select_option("#usage-size", "10")
    console.page.click('#usage-filters button[type="submit"]')
    expect(console.page.locator("#records-page")).to_have_text("1–10 of 12")
    assert console.page.is_disabled("#records-newer")
    console.page.click("#records-older")
    expect(console.page.locator("#records-page")).to_have_text("11–12 of 12")
    assert console.page.is_disabled("#records-older")
    console.page.click("#records-newer")
    expect(console.page.locator("#records-page")).to_have_text("1–10 of 12")

    console.page.fill("#usage-model", "m-odd")
    console.page.click('#usage-filters button[type="submit"]')
    expect(console.page.locator("#records-page")).to_have_text("1–6 of 6")
    assert set(console.page.locator("#usage-records tbody td:nth-child(2)").all_inner_texts()) == {"m-odd"}
    assert console.cards("#usage-sum")["Spend"] == "0.006"  # a plain key does not know the currency

    console.page.fill("#usage-from", "2030-01-02")
    console.page.fill("#usage-to", "2030-01-01")
    console.page.click('#usage-filters button[type="submit"]')
    assert console.message() == "The range ends before it starts: swap the two days."


# --- keys ------------------------------------------------------------------------------------------

def key_row(console: Console, remark: str):
    return console.page.locator("#keys-table tbody tr", has=console.page.locator(f"td:text-is('{remark}')"))


def test_an_admin_creates_a_key_uses_it_disables_it_and_deletes_it(gateway, open_console):
    console = open_console(permissions=["clipboard-read", "clipboard-write"])
    user_id = gateway.user()
    console.sign_in(gateway.key(user_id, is_admin=True))
    console.go("keys")
    console.page.wait_for_selector("#keys-table tbody tr")
    console.page.fill("#create-remark", "from the console")
    console.page.fill("#create-permissions", "mock-gpt, mock-fast")
    console.page.fill("#create-rpm", "30")
    console.page.fill("#create-max-fee", "2.5")
    console.page.click('#key-create button[type="submit"]')
    console.page.wait_for_selector("#new-key", state="visible")
    full = console.page.input_value("#new-key-value")
    assert full.startswith("sk-") and len(full) == 48
    console.page.click("#new-key-copy")
    expect(console.page.locator("#new-key-status")).to_have_text("Copied to the clipboard.")
    assert console.page.evaluate("navigator.clipboard.readText()") == full
    stored = {k.remark: k for k in gateway.store.list_keys(user_id)}["from the console"]
    assert (stored.permissions, stored.rpm, stored.max_fee) == (["mock-gpt", "mock-fast"], 30, 2_500_000)
    row = key_row(console, "from the console")
    assert row.locator("td").all_inner_texts()[:5] == [f"{full[:8]}...{full[-4:]}", "from the console",
                                                        "mock-gpt, mock-fast", "30", "2.5"]
    console.shot("keys")
    console.page.click("#new-key-done")
    assert console.page.is_hidden("#new-key") and console.page.input_value("#new-key-value") == ""

    assert chat(gateway.url, full, "mock-gpt").status_code == 200  # the new key works
    row.get_by_role("button", name="Disable").click()
    row.locator("td:text-is('disabled')").wait_for()
    assert chat(gateway.url, full, "mock-gpt").status_code == 401
    row.get_by_role("button", name="Enable").click()
    row.locator("td:text-is('active')").wait_for()
    assert chat(gateway.url, full, "mock-gpt").status_code == 200

    row.get_by_role("button", name="Edit").click()
    console.page.fill("#edit-remark", "renamed")
    console.page.fill("#edit-rpm", "")
    console.page.click("#key-edit-save")
    renamed = key_row(console, "renamed")
    renamed.wait_for()
    assert renamed.locator("td").nth(3).inner_text() == "—"
    assert gateway.store.get_key(stored.key_id).rpm is None

    renamed.get_by_role("button", name="Delete").click()
    console.page.wait_for_selector("#key-delete", state="visible")
    assert "renamed" in console.page.inner_text("#key-delete-which")
    console.page.click("#key-delete-cancel")  # nothing happens without the confirmation
    assert gateway.store.get_key(stored.key_id) is not None
    renamed.get_by_role("button", name="Delete").click()
    console.page.click("#key-delete-confirm")
    renamed.wait_for(state="detached")
    assert "deleted" in console.message()
    assert gateway.store.get_key(stored.key_id) is None
    assert chat(gateway.url, full, "mock-gpt").status_code == 401


def test_the_key_list_waits_out_its_one_a_second_limit(gateway, console):
    console.expect_refusal(429)
    user_id = gateway.user()
    admin = gateway.key(user_id, is_admin=True)
    gateway.key(user_id, remark="listed")
    console.sign_in(admin)
    console.cards("#overview-account")
    listings: list[int] = []
    console.page.on("response", lambda r: listings.append(r.status) if r.url.endswith("/get-api-tokens") else None)
    assert post(gateway.url, f"{ADMIN}/get-api-tokens", admin).status_code == 200  # this second's listing
    console.go("keys")
    key_row(console, "listed").wait_for()
    assert listings == [429, 200]
    assert console.page.is_hidden("#message")


def test_the_signed_in_key_cannot_be_disabled_or_deleted_from_its_own_session(gateway, console):
    user_id = gateway.user()
    console.sign_in(gateway.key(user_id, is_admin=True))
    console.go("keys")
    row = console.page.locator("#keys-table tbody tr").first
    row.locator("td:text-is('active, admin, this key')").wait_for()
    assert row.get_by_role("button").all_inner_texts() == ["Edit"]


def test_the_keyboard_alone_moves_between_views_and_backs_out_of_a_deletion(gateway, console):
    user_id = gateway.user()
    console.sign_in(gateway.key(user_id, is_admin=True))
    gateway.key(user_id, remark="spare")
    console.cards("#overview-account")
    for _ in range(12):  # Tab to the Keys link, then Enter
        console.page.keyboard.press("Tab")
        if console.page.evaluate("document.activeElement.dataset.view") == "keys":
            break
    console.page.keyboard.press("Enter")
    console.page.wait_for_selector("#view-keys", state="visible")
    assert console.page.evaluate("document.activeElement.id") == "keys-title"
    delete = key_row(console, "spare").get_by_role("button", name="Delete")
    delete.focus()
    console.page.keyboard.press("Enter")
    console.page.wait_for_selector("#key-delete", state="visible")
    assert console.page.evaluate("document.activeElement.id") == "key-delete-cancel"
    console.page.keyboard.press("Escape")
    console.page.wait_for_selector("#key-delete", state="hidden")
    assert {k.remark for k in gateway.store.list_keys(user_id)} == {"", "spare"}


# --- small screens ---------------------------------------------------------------------------------

def test_on_a_phone_every_view_fits_without_sideways_scrolling(gateway, open_console):
    console = open_console(PHONE, is_mobile=True, has_touch=True)
    user_id = gateway.user()
    admin = gateway.key(user_id, is_admin=True)
    assert chat(gateway.url, admin, "mock-gpt").status_code == 200
    console.sign_in(admin)
    for view in ("overview", "usage", "rates", "keys"):
        console.go(view)
        console.page.wait_for_load_state("networkidle")
        width = console.page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert width[0] <= width[1] <= PHONE["width"], (view, width)
        if view == "usage":
            console.shot("phone-usage")
