"""The wallet console (/app/) and the API docs (/docs) in a real browser: Debian's
Chromium driven by Playwright, against the real stack through the gateway."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright, expect

from paysys_dev.stack import ROOT
from tests.conftest import Stack, eventually, unique_email
from tests.e2e.helpers import PASSWORD
from tests.e2e.money import balance, deposit, funded_user, move, wallet_for
from tests.e2e.receiver import Receiver

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# `make screenshots` writes them to docs/console (shown in the README); a plain test run
# keeps them out of the tree.
SHOTS = ROOT / os.environ.get("PAYSYS_CONSOLE_SHOTS", ".run/console-shots")
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
# Chromium as the machine notes say it runs here: no sandbox as root, and none of its
# background calls to the outside (this network refuses them).
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    # make test installs Chromium (infra/stack.sh install-browser): missing, it is a
    # failure, never a silent skip.
    assert Path(CHROMIUM).exists(), f"Chromium is missing at {CHROMIUM}"
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


def _is_problem(text: str, kind: str) -> bool:
    # Chromium logs every 4xx answer to fetch; those are answers the page shows in words.
    return kind == "error" and not re.match(r"Failed to load resource: .* status of 4\d\d", text)


async def open_console(
    browser: Browser, stack: Stack, **options: object
) -> tuple[BrowserContext, Page, list[str]]:
    context = await browser.new_context(viewport={"width": 1200, "height": 900}, **options)  # type: ignore[arg-type]
    page = await context.new_page()
    problems: list[str] = []  # page errors and CSP violations: none expected
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: problems.append(msg.text) if _is_problem(msg.text, msg.type) else None,
    )
    page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
    await page.goto(stack.gateway + "/app/")
    return context, page, problems


async def register_ui(page: Page, email: str, full_name: str, merchant: bool = False) -> None:
    await page.fill("#reg-name", full_name)
    await page.fill("#reg-email", email)
    await page.fill("#reg-password", PASSWORD)
    await page.select_option("#reg-type", "merchant" if merchant else "personal")
    await page.click("#register-form button")
    await page.wait_for_selector("#notice:has-text('Account created')")


async def login_ui(page: Page, email: str) -> None:
    await page.fill("#login-email", email)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-form button")
    await page.wait_for_selector("#who:not([hidden])")


async def open_wallet(page: Page, currency: str) -> str:
    await page.click("#nav >> text=Wallets")
    await page.select_option("#open-currency", currency)
    await page.click("#open-form button")
    await page.wait_for_selector(f"#notice:has-text('Your {currency} wallet is open')")
    row = page.locator("#wallet-rows tr", has_text=currency)
    return (await row.locator("code").inner_text()).strip()


async def top_up(page: Page, wallet_id: str, amount: str, card: str) -> None:
    await page.click("#nav >> text=Top up")
    await page.select_option("#topup-wallet", wallet_id)
    await page.fill("#topup-amount", amount)
    await page.fill("#topup-number", card)
    await page.fill("#topup-cvc", "123")
    await page.click("#topup-form button")


async def send(
    page: Page, kind: str, to: str, amount: str, description: str = "", source: str = ""
) -> None:
    await page.click("#nav >> text=Send or pay")
    if source:
        await page.select_option("#send-source", source)
    await page.check(f"input[name=kind][value={kind}]")
    await page.fill("#send-destination", to)
    await page.fill("#send-amount", amount)
    await page.fill("#send-description", description)
    await page.click("#send-form button")
    await page.wait_for_selector("#confirm:not([hidden]), #alert:not([hidden])")
    assert await page.is_visible("#confirm"), await page.inner_text("#alert")


async def merchant(
    api: httpx.AsyncClient, label: str, full_name: str
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """A merchant with a wallet: (email, auth headers, wallet)."""
    email = unique_email(label)
    body = {
        "email": email,
        "password": PASSWORD,
        "full_name": full_name,
        "account_type": "merchant",
    }
    assert (await api.post("/users/register", json=body)).status_code == 201
    login = await api.post("/users/login", json={"email": email, "password": PASSWORD})
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    return email, auth, await wallet_for(api, auth)


async def shot(page: Page, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


async def test_a_person_signs_up_tops_up_sends_pays_and_reads_the_history(
    browser: Browser, stack: Stack
) -> None:
    # A merchant, to be paid
    _, merchant, problems = await open_console(browser, stack)
    merchant_email = unique_email("shop")
    await register_ui(merchant, merchant_email, "Corner Shop", merchant=True)
    await login_ui(merchant, merchant_email)
    shop_wallet = await open_wallet(merchant, "USD")

    # A person
    _, page, person_problems = await open_console(browser, stack)
    await shot(page, "login")
    email = unique_email("ada")
    await register_ui(page, email, "Ada Lovelace")
    await login_ui(page, email)
    assert await page.inner_text("#who-name") == "Ada Lovelace"
    usd = await open_wallet(page, "USD")
    jpy = await open_wallet(page, "JPY")  # a second currency
    await top_up(page, usd, "50", "4242424242424242")
    await page.wait_for_selector("#notice:has-text('Done: 50.00 USD added')")
    await shot(page, "top-up")
    await top_up(page, usd, "5.00", "4000000000000002")
    await page.wait_for_selector("#alert:has-text('The card was declined')")

    await send(page, "transfer", shop_wallet, "12.5", "lunch", source=usd)
    assert "12.50 USD" in await page.inner_text("#confirm-text")
    await shot(page, "confirm")
    await page.click("#confirm-yes")
    await page.wait_for_selector("#notice:has-text('Sent: 12.50 USD')")
    await send(page, "payment", shop_wallet, "7.25", "coffee beans", source=usd)
    await page.click("#confirm-yes")
    await page.wait_for_selector("#notice:has-text('Paid: 7.25 USD')")
    await send(page, "transfer", shop_wallet, "1000", source=usd)
    await page.click("#confirm-yes")
    await page.wait_for_selector("#alert:has-text('not enough money')")
    # Amounts in the currency's minor digits: three decimals of USD never leave the page.
    assert await page.is_visible("#send-form")  # a refusal returns to the form
    await page.fill("#send-amount", "1.005")
    await page.click("#send-form button")
    await page.wait_for_selector("#alert:has-text('up to 2 decimals')")

    await top_up(page, jpy, "1.5", "4242424242424242")  # JPY has no minor unit
    await page.wait_for_selector("#alert:has-text('whole numbers only')")
    await top_up(page, jpy, "1500", "4242424242424242")
    await page.wait_for_selector("#notice:has-text('Done: 1500 JPY added')")
    await page.click("#nav >> text=Wallets")
    await page.wait_for_selector("#wallet-rows tr:has-text('30.25 USD')")
    await page.wait_for_selector("#wallet-rows tr:has-text('1500 JPY')")
    await shot(page, "wallets")

    # History: newest first, filters and pages, and a transaction's details.
    await page.click("#nav >> text=History")
    await page.wait_for_selector("#tx-rows tr")
    rows = page.locator("#tx-rows tr")
    # two deposits, a declined one, a transfer, a payment and a refused transfer
    assert await rows.count() == 6
    assert "1500 JPY" in await rows.nth(0).inner_text()  # newest first
    await page.select_option("#filter-type", "deposit")
    await page.click("#filter-form button")
    await expect(page.locator("#tx-rows tr")).to_have_count(3)
    await page.select_option("#filter-type", "")
    await page.select_option("#filter-status", "FAILED")
    await page.click("#filter-form button")
    await expect(page.locator("#tx-rows tr")).to_have_count(2)
    await page.locator("#tx-rows tr", has_text="deposit").locator("button").click()
    await page.wait_for_selector("#tx-detail:not([hidden])")
    detail = await page.inner_text("#tx-fields")
    assert "FAILED" in detail and "CARD_DECLINED" in detail and "declined" in detail
    await shot(page, "history")
    await page.click("#close-detail")
    await page.select_option("#filter-status", "")
    await page.select_option("#filter-limit", "5")
    await page.click("#filter-form button")
    await page.wait_for_selector("#next-page:not([hidden])")  # 5 of 6
    await page.click("#next-page")
    await expect(page.locator("#tx-rows tr")).to_have_count(1)
    assert await page.is_visible("#first-page")
    assert "50.00 USD" in await page.inner_text("#tx-rows")  # the oldest: the first top-up

    await page.click("#logout")
    await page.wait_for_selector("#view-auth:not([hidden])")
    assert await page.is_hidden("#nav")
    assert problems == [] and person_problems == []


async def test_a_double_click_or_a_retry_after_a_lost_answer_moves_money_once(
    browser: Browser, stack: Stack, api: httpx.AsyncClient
) -> None:
    user, auth, wallet = await funded_user(api, "20.00")
    _, _, other = await funded_user(api, "0")
    _, page, problems = await open_console(browser, stack)
    await login_ui(page, user["email"])

    await send(page, "transfer", other["id"], "1.00")
    await page.dblclick("#confirm-yes")
    await page.wait_for_selector("#notice:has-text('Sent: 1.00 USD')")
    assert await balance(api, auth, wallet["id"]) == "19.00"

    # The server applies the transfer, but its answer is lost on the way back.
    lost = {"n": 0}

    async def lose_the_first_answer(route: Route) -> None:
        if route.request.method == "POST" and lost["n"] == 0:
            lost["n"] += 1
            await route.fetch()  # reaches the server, which moves the money
            await route.abort("connectionreset")
        else:
            await route.continue_()

    await page.route("**/transactions/create", lose_the_first_answer)
    await send(page, "transfer", other["id"], "2.00")
    await page.click("#confirm-yes")
    await page.wait_for_selector("#alert:has-text('No answer from the server')")
    assert await balance(api, auth, wallet["id"]) == "17.00"  # it did move
    await page.click("#confirm-yes")  # the same submit, again: the same key
    await page.wait_for_selector("#notice:has-text('Sent: 2.00 USD')")
    assert await balance(api, auth, wallet["id"]) == "17.00"  # and only once
    assert all("Failed to load resource" in p for p in problems), problems  # the lost one


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "SERVICE_UNAVAILABLE"), (504, "SERVICE_UNAVAILABLE"), (409, "REQUEST_IN_PROGRESS")],
)
async def test_an_answer_that_leaves_the_outcome_unknown_keeps_the_key(
    browser: Browser, stack: Stack, api: httpx.AsyncClient, status: int, code: str
) -> None:
    # Finding 19.4: a 503 (OutcomePending, a balancer or the gateway's upstream timeout),
    # a 504 or a 409 (the first request still running) says nothing of what happened.
    # The console once dropped its key and asked the user to start again: a second
    # transfer. The same confirm must resend the same key, and say it is checking.
    user, auth, wallet = await funded_user(api, "20.00")
    _, _, other = await funded_user(api, "0")
    _, page, problems = await open_console(browser, stack)
    await login_ui(page, user["email"])
    answered = {"n": 0}

    async def unknown_once(route: Route) -> None:
        if route.request.method == "POST" and answered["n"] == 0:
            answered["n"] += 1
            await route.fetch()  # the server moves the money; its answer is replaced
            await route.fulfill(
                status=status,
                content_type="application/problem+json",
                headers={"Retry-After": "1"},
                body=(
                    f'{{"type": "about:blank", "title": "t", "status": {status},'
                    f' "detail": "d", "code": "{code}"}}'
                ),
            )
        else:
            await route.continue_()

    await page.route("**/transactions/create", unknown_once)
    await send(page, "transfer", other["id"], "3.00")
    keys: list[str | None] = []
    page.on(
        "request",
        lambda r: (
            keys.append(r.headers.get("idempotency-key"))
            if r.url.endswith("/transactions/create")
            else None
        ),
    )
    await page.click("#confirm-yes")
    # It checks by itself (the same key again), or asks to confirm again: either way the
    # confirmation stays, and the money moves once.
    await page.wait_for_selector(
        "#notice:has-text('Sent: 3.00 USD'), #alert:has-text('checking')", timeout=20_000
    )
    if not await page.is_visible("#notice:has-text('Sent: 3.00 USD')"):
        assert await page.is_visible("#confirm-yes")
        await page.click("#confirm-yes")
        await page.wait_for_selector("#notice:has-text('Sent: 3.00 USD')", timeout=20_000)
    assert await balance(api, auth, wallet["id"]) == "17.00"
    assert len(keys) >= 2 and len(set(keys)) == 1, keys
    listed = (await api.get("/transactions", headers=auth)).json()["items"]
    assert [t["amount"] for t in listed if t["type"] == "transfer"] == ["3.00"]
    assert all(f"status of {status}" in p or "Failed to load" in p for p in problems), problems


async def test_payouts_from_a_csv_file_show_each_lines_result(
    browser: Browser, stack: Stack, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    # Issue 21.3: a CSV of payouts, one POST /transactions/batch; each line's result.
    user, auth, wallet = await funded_user(api, "30.00")
    _, b_auth, b = await funded_user(api, "0")
    _, c_auth, c = await funded_user(api, "0")
    csv = tmp_path / "payroll.csv"
    csv.write_text(
        "destination_wallet_id,amount,description\n"
        f'{b["id"]},10.00,"March, part 1"\n'
        f"{c['id']},25,too much after the first\n"
        f"{c['id']},20.00\n"
    )
    _, page, problems = await open_console(browser, stack, bypass_csp=True)
    await login_ui(page, user["email"])
    await page.click("#nav >> text=Payouts")
    await page.wait_for_selector("#payouts-source option", state="attached")
    await page.set_input_files("#payouts-file", str(csv))
    await page.click("#payouts-form button[type=submit]")
    await page.wait_for_selector("#payouts-confirm:not([hidden])")
    assert "Send 3 payouts, 55.00 USD in all" in await page.inner_text("#payouts-confirm-text")
    await page.click("#payouts-yes")
    await page.wait_for_selector("#notice:has-text('2 of 3 payouts sent')")
    rows = page.locator("#payout-rows tr")
    await expect(rows).to_have_count(3)
    texts = [await rows.nth(i).inner_text() for i in range(3)]
    assert texts[0].startswith("2") and "Sent" in texts[0] and "10.00 USD" in texts[0]
    assert texts[1].startswith("3") and "Not sent" in texts[1] and "not enough money" in texts[1]
    assert texts[2].startswith("4") and "Sent" in texts[2]
    await shot(page, "payouts")
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    assert [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")] == []
    assert await balance(api, auth, wallet["id"]) == "0.00"
    assert await balance(api, b_auth, b["id"]) == "10.00"
    assert await balance(api, c_auth, c["id"]) == "20.00"
    # A line that cannot be read is named, and nothing is sent.
    await page.fill("#payouts-text", f"{b['id']},1.234\n")
    await page.click("#payouts-form button[type=submit]")
    await page.wait_for_selector("#alert:has-text('Line 1: please check the amount')")
    # A wallet that does not exist refuses the whole file, nothing moves.
    await page.fill("#payouts-text", f"{'0' * 8}-0000-4000-8000-{'0' * 12},1.00\n")
    await page.click("#payouts-form button[type=submit]")
    await page.click("#payouts-yes")
    await page.wait_for_selector("#alert:not([hidden])")
    assert await balance(api, b_auth, b["id"]) == "10.00"
    assert all("status of 404" in p for p in problems), problems


async def test_a_payee_is_named_before_paying_and_a_merchant_refunds_from_the_history(
    browser: Browser, stack: Stack, api: httpx.AsyncClient
) -> None:
    # Issue 22: confirmation of payee; a refund from the transaction's details.
    payer, p_auth, p_wallet = await funded_user(api, "40.00")
    shop_email, m_auth, shop = await merchant(api, "shop", "Corner Shop Ltd")
    _, page, problems = await open_console(browser, stack, bypass_csp=True)
    await login_ui(page, payer["email"])
    await send(page, "payment", shop["id"], "25.00", "a lamp", source=p_wallet["id"])
    assert "Pay Corner Shop Ltd (merchant)" in await page.inner_text("#confirm-text")
    await page.click("#confirm-yes")
    await page.wait_for_selector("#notice:has-text('Paid: 25.00 USD')")
    await page.click("#logout")
    await page.wait_for_selector("#view-auth:not([hidden])")

    await login_ui(page, shop_email)
    await page.click("#nav >> text=History")
    await page.locator("#tx-rows tr", has_text="payment").locator("button").click()
    await page.wait_for_selector("#refund-form:not([hidden])")
    assert await page.input_value("#refund-amount") == "25.00"
    await page.fill("#refund-amount", "10")
    await page.fill("#refund-reason", "the shade was cracked")
    await page.click("#refund-form button")
    await page.wait_for_selector("#notice:has-text('Refunded: 10.00 USD')")
    await page.wait_for_selector("#tx-fields:has-text('Refunded')")  # so far: 10.00 USD
    assert "10.00 USD" in await page.inner_text("#tx-fields")
    assert await page.input_value("#refund-amount") == "15.00"  # what is left
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    assert [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")] == []
    assert await balance(api, p_auth, p_wallet["id"]) == "25.00"
    assert await balance(api, m_auth, shop["id"]) == "15.00"
    assert problems == []


async def test_a_payer_authorizes_and_the_merchant_captures_part_or_it_is_voided(
    browser: Browser, stack: Stack, api: httpx.AsyncClient
) -> None:
    # Issue 22: "authorize only" in the payment form; balance, held and available; a
    # merchant's open authorizations with Capture (an amount) and Void.
    payer, p_auth, p_wallet = await funded_user(api, "40.00")
    shop_email, m_auth, hotel = await merchant(api, "hotel", "Harbour Hotel")
    _, page, problems = await open_console(browser, stack, bypass_csp=True)
    await login_ui(page, payer["email"])
    for amount, description in (("30.00", "two nights"), ("5.00", "minibar")):
        await page.click("#nav >> text=Send or pay")
        await page.check("input[name=kind][value=payment]")
        await page.check("#send-manual")
        await page.fill("#send-destination", hotel["id"])
        await page.fill("#send-amount", amount)
        await page.fill("#send-description", description)
        await page.click("#send-form button")
        await page.wait_for_selector("#confirm:not([hidden])")
        assert "Authorize a payment to Harbour Hotel" in await page.inner_text("#confirm-text")
        await page.click("#confirm-yes")
        await page.wait_for_selector(f"#notice:has-text('Authorized: {amount} USD held')")
    await page.click("#nav >> text=Wallets")
    row = page.locator("#wallet-rows tr", has_text="USD")
    await page.wait_for_selector("#authorizations:not([hidden])")
    assert "35.00 USD" in await row.inner_text()  # held
    assert "5.00 USD" in await row.inner_text()  # available
    # The payer may void, not capture.
    mine = page.locator("#authorization-rows tr", has_text="minibar")
    assert await mine.locator("text=Capture").count() == 0
    await mine.locator("button", has_text="Void").click()
    await page.wait_for_selector("#notice:has-text('Voided: the 5.00 USD held')")
    await page.click("#logout")
    await page.wait_for_selector("#view-auth:not([hidden])")

    await login_ui(page, shop_email)
    await page.click("#nav >> text=Wallets")
    stay = page.locator("#authorization-rows tr", has_text="two nights")
    await stay.wait_for()
    await stay.locator("input").fill("20")
    await shot(page, "authorizations")
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    assert [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")] == []
    await stay.locator("button", has_text="Capture").click()
    await page.wait_for_selector("#notice:has-text('Captured: 20.00 USD of the 30.00 USD')")
    await page.wait_for_selector("#authorizations[hidden]", state="attached")
    assert await balance(api, p_auth, p_wallet["id"]) == "20.00"
    assert await balance(api, m_auth, hotel["id"]) == "20.00"
    held = (await api.get(f"/wallets/{p_wallet['id']}", headers=p_auth)).json()["held_balance"]
    assert held == "0.00"
    assert problems == []


async def test_a_merchants_payment_link_and_its_qr_code_fill_in_the_payers_form(
    browser: Browser, stack: Stack, api: httpx.AsyncClient
) -> None:
    # Issue 22: a "Receive" page: a payment link, with a QR code drawn in the page (no
    # CDN), that opens the pay form filled in, "authorize only" where the merchant asks.
    payer, p_auth, p_wallet = await funded_user(api, "30.00")
    shop_email, _, shop = await merchant(api, "taxi", "City Cabs")
    _, page, problems = await open_console(browser, stack, bypass_csp=True)
    await login_ui(page, shop_email)
    await page.click("#nav >> text=Receive")
    await page.wait_for_selector("#receive-manual-choice:not([hidden])")
    await page.fill("#receive-amount", "12.5")
    await page.fill("#receive-description", "ride to the station & back")
    await page.check("#receive-manual")
    await page.click("#receive-form button")
    await page.wait_for_selector("#receive-result:not([hidden])")
    link = await page.input_value("#receive-link")
    assert shop["id"] in link and "amount=12.50" in link and "capture=manual" in link
    assert link.isascii()
    qr = await page.eval_on_selector(
        "#receive-qr", "img => [img.src.slice(0, 14), img.complete, img.naturalWidth]"
    )
    assert qr[0] == "data:image/gif" and qr[1] and qr[2] > 100
    await shot(page, "receive")
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    assert [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")] == []
    await page.click("#logout")
    await page.wait_for_selector("#view-auth:not([hidden])")

    # The payer opens the link, logged out: after login, the form is filled in.
    await page.goto(link)
    await login_ui(page, payer["email"])
    await page.wait_for_selector("#notice:has-text('Filled in from a payment link')")
    assert await page.input_value("#send-destination") == shop["id"]
    assert await page.input_value("#send-amount") == "12.50"
    assert await page.input_value("#send-description") == "ride to the station & back"
    assert await page.is_checked("input[name=kind][value=payment]")
    assert await page.is_checked("#send-manual")
    await page.select_option("#send-source", p_wallet["id"])
    await page.click("#send-form button")
    await page.wait_for_selector("#confirm:not([hidden])")
    assert "Authorize a payment to City Cabs" in await page.inner_text("#confirm-text")
    await page.click("#confirm-yes")
    await page.wait_for_selector("#notice:has-text('Authorized: 12.50 USD held')")
    held = (await api.get(f"/wallets/{p_wallet['id']}", headers=p_auth)).json()
    assert (held["balance"], held["held_balance"]) == ("30.00", "12.50")
    assert problems == []


async def test_a_statement_adds_up_downloads_as_csv_and_pdf_and_limits_can_be_lowered(
    browser: Browser, stack: Stack, api: httpx.AsyncClient
) -> None:
    # Issue 24: a statement page (period, entries, totals, an SVG chart, CSV and PDF
    # downloads) and a limits page (what is spent against each limit; lower them), under
    # the console's strict CSP.
    user, auth, wallet = await funded_user(api, "100.00")
    _, _, friend = await funded_user(api, "0")
    for amount, what in (("12.50", "groceries"), ("30.00", "rent share")):
        sent = await move(
            api, auth, "transfer", wallet["id"], friend["id"], amount, description=what
        )
        assert sent.status_code == 201, sent.text
    _, page, problems = await open_console(browser, stack, accept_downloads=True)
    await login_ui(page, user["email"])
    await page.click("#nav >> text=Statements")
    await page.select_option("#statement-wallet", wallet["id"])
    await page.click("#statement-form button")
    await page.wait_for_selector("#statement-result:not([hidden])")
    totals = await page.inner_text("#statement-totals")
    for needle in (
        "Opening balance",
        "0.00 USD",
        "Money in",
        "100.00 USD",
        "42.50 USD",
        "57.50 USD",
    ):
        assert needle in totals, totals
    rows = await page.locator("#statement-rows tr").all_inner_texts()
    assert len(rows) == 3 and "rent share" in rows[2] and "-30.00 USD" in rows[2]
    assert await page.locator("#statement-chart svg polyline").count() == 1
    await shot(page, "statement")
    async with page.expect_download() as csv_download:
        await page.click("#statement-csv")
    csv_text = Path(await (await csv_download.value).path()).read_bytes().decode()
    assert csv_text.startswith("at,transaction_id,type,operation,amount,balance_after")
    assert "groceries" in csv_text and csv_text.count("\r\n") == 4
    async with page.expect_download() as pdf_download:
        await page.click("#statement-pdf")
    assert Path(await (await pdf_download.value).path()).read_bytes().startswith(b"%PDF")

    await page.click("#nav >> text=Limits")
    await page.select_option("#limits-wallet", wallet["id"])
    await page.click("#limits-pick button")
    await page.wait_for_selector("#limits-result:not([hidden])")
    table = await page.inner_text("#limits-rows")
    assert "42.50 USD" in table and "20000.00 USD" in table, table
    await page.fill("#limits-daily", "50")
    await page.click("#limits-form button")
    await page.wait_for_selector("#notice:has-text('Your limits are saved')")
    daily = await page.locator("#limits-rows tr", has_text="Per day").inner_text()
    assert "50.00 USD" in daily and "7.50 USD" in daily, daily  # 7.50 left today
    await shot(page, "limits")
    await page.fill("#limits-daily", "20000.01")
    await page.click("#limits-form button")
    await page.wait_for_selector("#alert:has-text('above the maximum')")
    # A transfer past the daily limit is refused, in words.
    await send(page, "transfer", friend["id"], "10.00", "too much today")
    await page.click("#confirm-yes")
    await page.wait_for_selector("#alert:has-text('spending limits')")
    assert await balance(api, auth, wallet["id"]) == "57.50"
    assert problems == []


async def test_a_developer_adds_a_webhook_sees_its_deliveries_retries_one_and_deletes_it(
    browser: Browser, stack: Stack, api: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Issue 23: a "Developers" page: endpoints (the secret shown once), deliveries with
    # their status and attempts, a Retry button.
    user, auth, wallet = await funded_user(api, "0")
    _, page, problems = await open_console(browser, stack, bypass_csp=True)
    await login_ui(page, user["email"])
    await page.click("#nav >> text=Developers")
    await page.fill("#webhook-url", receiver.base + "/console")
    await page.click("#webhook-form button")
    await page.wait_for_selector("#notice:has-text('Endpoint added')")
    secret = await page.input_value("#webhook-secret")
    assert secret.startswith("whsec_")
    # The list is fetched again after the notice (as after a delete, below): wait for it.
    await expect(page.locator("#webhook-rows tr")).to_have_count(1)
    resp = await deposit(api, auth, wallet["id"], "7.00")
    assert resp.status_code == 201, resp.text

    async def delivered() -> bool:
        return {"wallet.funds_added", "transaction.completed"} <= {
            r.event["event_type"] for r in receiver.at("/console")
        }

    await eventually(delivered, timeout=30)
    await page.click("#webhook-rows button:has-text('Deliveries')")
    await page.wait_for_selector("#delivery-rows tr:has-text('transaction.completed')")
    assert "Delivered" in await page.inner_text("#delivery-rows")
    await shot(page, "developers")
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    assert [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")] == []
    before = len(receiver.at("/console"))
    await (
        page.locator("#delivery-rows tr", has_text="transaction.completed")
        .locator("button")
        .click()
    )
    await page.wait_for_selector("#notice:has-text('will be sent again')")
    await eventually(lambda: _more(receiver, "/console", before), timeout=20)
    await page.click("#webhook-rows button:has-text('Delete')")
    await page.wait_for_selector("#notice:has-text('is deleted')")
    # The notice comes first, then the list is fetched again: wait for it (Playwright's
    # expect retries), as a person sees the row go a moment later.
    await expect(page.locator("#webhook-rows tr")).to_have_count(0)
    assert (await api.get("/webhooks", headers=auth)).json()["items"] == []
    assert problems == []


async def _more(receiver: Receiver, path: str, than: int) -> bool:
    return len(receiver.at(path)) > than


async def test_names_and_descriptions_holding_markup_render_as_text(
    browser: Browser, stack: Stack, api: httpx.AsyncClient
) -> None:
    hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    email = unique_email("xss")
    resp = await api.post(
        "/users/register", json={"email": email, "password": PASSWORD, "full_name": hostile}
    )
    assert resp.status_code == 201
    login = await api.post("/users/login", json={"email": email, "password": PASSWORD})
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    wallet = await wallet_for(api, auth)
    assert (await deposit(api, auth, wallet["id"], "3.00", description=hostile)).status_code == 201

    _, page, problems = await open_console(browser, stack)
    await login_ui(page, email)
    assert await page.inner_text("#who-name") == hostile
    await page.click("#nav >> text=History")
    await page.wait_for_selector("#tx-rows tr")
    assert hostile in await page.inner_text("#tx-rows")
    assert await page.locator("img:not(#receive-qr)").count() == 0  # none injected
    assert await page.locator("main script, header script").count() == 0
    assert not any("dialog" in p for p in problems), problems


async def test_an_expired_session_returns_to_login_and_keeps_what_was_typed(
    browser: Browser, stack: Stack, api: httpx.AsyncClient
) -> None:
    user, _, wallet = await funded_user(api, "10.00")
    _, page, _ = await open_console(browser, stack)
    seen: dict[str, str] = {}

    async def remember_token(route: Route) -> None:
        seen["auth"] = route.request.headers.get("authorization", "")
        await route.continue_()

    await page.route("**/wallets", remember_token)
    await login_ui(page, user["email"])
    await page.wait_for_selector("#wallet-rows tr")
    await page.unroute("**/wallets")
    await page.click("#nav >> text=Send or pay")
    await page.fill("#send-destination", wallet["id"])
    await page.fill("#send-amount", "4.56")
    await page.fill("#send-description", "half-typed")
    # The session ends elsewhere (logged out from another tab, or expired).
    out = await api.post("/users/logout", headers={"Authorization": seen["auth"]})
    assert out.status_code == 204
    await page.click("#nav >> text=Wallets")
    await page.wait_for_selector("#auth-reason:has-text('session has ended')")
    assert await page.is_visible("#view-auth")
    await login_ui(page, user["email"])
    await page.click("#nav >> text=Send or pay")
    assert await page.input_value("#send-destination") == wallet["id"]
    assert await page.input_value("#send-amount") == "4.56"
    assert await page.input_value("#send-description") == "half-typed"


async def test_no_serious_accessibility_violations_on_any_screen(
    browser: Browser, stack: Stack, api: httpx.AsyncClient
) -> None:
    user, _, _ = await funded_user(api, "10.00")
    # axe-core is injected as a script of its own: only for this check is the CSP bypassed.
    _, page, _ = await open_console(browser, stack, bypass_csp=True)
    found: dict[str, list[str]] = {}

    async def audit(screen: str) -> None:
        await page.add_script_tag(path=str(AXE))
        result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']}"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        if bad:
            found[screen] = bad

    await audit("login")
    await login_ui(page, user["email"])
    await page.wait_for_selector("#wallet-rows tr")
    await audit("wallets")
    for name, selector in (("top up", "#topup-form"), ("send", "#send-form")):
        await page.click(f"#nav >> text={'Top up' if name == 'top up' else 'Send or pay'}")
        await page.wait_for_selector(selector)
        await audit(name)
    await page.click("#nav >> text=History")
    await page.wait_for_selector("#tx-rows tr")
    await audit("history")
    await page.click("#nav >> text=Statements")
    await page.click("#statement-form button")
    await page.wait_for_selector("#statement-rows tr")
    await audit("statement")
    await page.click("#nav >> text=Limits")
    await page.click("#limits-pick button")
    await page.wait_for_selector("#limits-rows tr")
    await audit("limits")
    assert found == {}


async def test_the_api_docs_render_with_the_outside_network_cut_off(
    browser: Browser, stack: Stack
) -> None:
    context = await browser.new_context()
    outside: list[str] = []

    async def only_this_origin(route: Route) -> None:
        if route.request.url.startswith(stack.gateway):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort("internetdisconnected")

    await context.route("**/*", only_this_origin)
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    response = await page.goto(stack.gateway + "/docs")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    await page.wait_for_selector(".opblock", timeout=30_000)
    operations = await page.locator(".opblock").count()
    assert operations >= 13
    assert await page.locator(".opblock-summary-path", has_text="/transactions/create").count()
    assert outside == [] and errors == [], (outside, errors)
    await shot(page, "docs", full_page=False)


async def test_the_console_is_served_under_a_strict_content_security_policy(
    stack: Stack,
) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway) as client:
        for path in ("/app/", "/app/app.js", "/docs"):
            resp = await client.get(path)
            assert resp.status_code == 200, path
            csp = resp.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src 'self'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert resp.headers["x-content-type-options"] == "nosniff"
        page = (await client.get("/app/")).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", page)  # no inline script
        assert " style=" not in page
        for script in ("api.js", "app.js", "words.js"):
            code = (await client.get(f"/app/{script}")).text
            # no token (nor anything else) kept in web storage or a script-set cookie
            assert not re.search(r"(localStorage|sessionStorage)\s*[.\[]|document\.cookie", code)
            assert "innerHTML" not in code and "insertAdjacentHTML" not in code


async def test_no_token_is_kept_in_web_storage_or_cookies(
    browser: Browser, stack: Stack, api: httpx.AsyncClient
) -> None:
    # What the page holds, not what its scripts look like: after a login, a refresh and
    # a top-up, web storage is empty and no cookie was set.
    user, _, _ = await funded_user(api, "1.00")
    context, page, _ = await open_console(browser, stack)
    await login_ui(page, user["email"])
    await page.wait_for_selector("#wallet-rows tr")
    await page.click("#nav >> text=History")
    await page.wait_for_selector("#tx-rows tr")
    held = await page.evaluate(
        "({local: Object.keys(localStorage), session: Object.keys(sessionStorage),"
        " cookie: document.cookie})"
    )
    assert held == {"local": [], "session": [], "cookie": ""}
    assert await context.cookies() == []
    await context.close()


async def test_the_session_refreshes_itself_before_the_access_token_expires(
    browser: Browser, stack: Stack, api: httpx.AsyncClient
) -> None:
    user, _, _ = await funded_user(api, "1.00")
    context = await browser.new_context()
    page = await context.new_page()
    await page.clock.install()  # the page's timers run on a clock the test moves
    await page.goto(stack.gateway + "/app/")
    tokens: list[str] = []
    refreshes: list[int] = []

    async def watch(route: Route) -> None:
        if route.request.url.endswith("/users/refresh"):
            refreshes.append(1)
        elif auth := route.request.headers.get("authorization"):
            tokens.append(auth)
        await route.continue_()

    await page.route("**/*", watch)
    await login_ui(page, user["email"])
    await page.wait_for_selector("#wallet-rows tr")
    # 15 minutes on: the access token (900 s) would have expired; the console refreshed
    # it a minute before, on its own.
    await page.clock.fast_forward("14:30")
    for _ in range(100):
        if refreshes:
            break
        await asyncio.sleep(0.1)
    assert len(refreshes) == 1
    await page.click("#nav >> text=History")
    await page.wait_for_selector("#tx-rows tr")
    assert tokens[-1] != tokens[0]  # the new access token
    assert await page.is_visible("#who")  # still signed in, nothing asked
    await context.close()
