"""Statements and balances at an instant (issue 24), through the gateway: the statement
adds up by construction and to the ledger, at every instant between operations; CSV
and PDF say the same as JSON."""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Stack
from tests.e2e.helpers import assert_problem, user_with_token
from tests.e2e.money import deposit, funded_user, move, wallet_for

Auth = dict[str, str]


def now() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime) -> str:
    return t.isoformat()


async def statement(
    api: httpx.AsyncClient, auth: Auth, wallet_id: str, accept: str = "application/json", **q: str
) -> httpx.Response:
    return await api.get(
        f"/wallets/{wallet_id}/statement", params=q, headers={**auth, "Accept": accept}
    )


async def balance_at(api: httpx.AsyncClient, auth: Auth, wallet_id: str, at: datetime) -> str:
    resp = await api.get(f"/wallets/{wallet_id}/balance", params={"at": iso(at)}, headers=auth)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["wallet_id"] == wallet_id
    return str(body["balance"])


def cents(text: str) -> int:
    whole, _, frac = text.lstrip("-").partition(".")
    value = int(whole) * 100 + int(frac or 0)
    return -value if text.startswith("-") else value


def check_adds_up(body: dict[str, Any]) -> None:
    """opening + credits - debits = closing, and every entry's balance_after is the
    one before it plus its amount."""
    running = cents(body["opening_balance"])
    credits = debits = 0
    for e in body["entries"]:
        amount = cents(e["amount"])
        assert e["operation"] == ("credit" if amount > 0 else "debit")
        credits += max(amount, 0)
        debits += max(-amount, 0)
        running += amount
        assert cents(e["balance_after"]) == running
    assert (cents(body["total_credits"]), cents(body["total_debits"])) == (credits, debits)
    assert running == cents(body["closing_balance"])


async def test_a_statement_shows_every_movement_with_what_it_was_for(
    api: httpx.AsyncClient,
) -> None:
    start = now()
    payer, auth, wallet = await funded_user(api, "100.00")
    _, friend_auth, friend = await funded_user(api, "0")
    _, m_auth, shop = await funded_user(api, "0", account_type="merchant")
    sent = await move(
        api, auth, "transfer", wallet["id"], friend["id"], "30.00", description="rent"
    )
    assert sent.status_code == 201, sent.text
    paid = await move(api, auth, "payment", wallet["id"], shop["id"], "20.00", description="shoes")
    assert paid.status_code == 201, paid.text
    refused = await move(api, auth, "transfer", wallet["id"], friend["id"], "500.00")
    assert_problem(refused, 400, "INSUFFICIENT_FUNDS")
    back = await api.post(
        f"/transactions/{paid.json()['id']}/refund", json={"amount": "5.00"}, headers=m_auth
    )
    assert back.status_code == 201, back.text
    end = now()

    resp = await statement(api, auth, wallet["id"], **{"from": iso(start), "to": iso(end)})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["wallet_id"], body["currency"]) == (wallet["id"], "USD")
    assert (body["opening_balance"], body["closing_balance"]) == ("0.00", "55.00")
    assert (body["total_credits"], body["total_debits"]) == ("105.00", "50.00")
    check_adds_up(body)
    seen = [
        (e["type"], e["operation"], e["amount"], e["description"], e["counterparty_wallet_id"])
        for e in body["entries"]
    ]
    assert seen == [
        ("deposit", "credit", "100.00", None, None),  # from a card: no counterparty
        ("transfer", "debit", "-30.00", "rent", friend["id"]),
        ("payment", "debit", "-20.00", "shoes", shop["id"]),
        ("refund", "credit", "5.00", back.json()["description"], shop["id"]),
    ]
    assert [e["transaction_id"] for e in body["entries"][1:3]] == [
        sent.json()["id"],
        paid.json()["id"],
    ]
    assert body["closing_balance"] == await balance_at(api, auth, wallet["id"], end)
    # The friend's statement sees the same transfer from the other side.
    theirs = (await statement(api, friend_auth, friend["id"])).json()
    assert [(e["type"], e["amount"], e["counterparty_wallet_id"]) for e in theirs["entries"]] == [
        ("transfer", "30.00", wallet["id"])
    ]
    assert payer["email"]  # (the owner, for the PDF test below)


async def test_the_balance_at_every_instant_between_operations(api: httpx.AsyncClient) -> None:
    _, auth, wallet = await funded_user(api, "0")
    _, _, other = await funded_user(api, "0")
    before = now()
    expected: list[tuple[datetime, str]] = [(before, "0.00")]
    steps = [
        ("deposit", "40.00"),
        ("transfer", "15.50"),
        ("deposit", "2.25"),
        ("transfer", "26.75"),
    ]
    for kind, amount in steps:
        if kind == "deposit":
            resp = await deposit(api, auth, wallet["id"], amount)
        else:
            resp = await move(api, auth, "transfer", wallet["id"], other["id"], amount)
        assert resp.status_code == 201, resp.text
        current = (await api.get(f"/wallets/{wallet['id']}", headers=auth)).json()["balance"]
        expected.append((now(), current))
    assert [b for _, b in expected] == ["0.00", "40.00", "24.50", "26.75", "0.00"]
    for at, want in expected:
        assert await balance_at(api, auth, wallet["id"], at) == want
    # Long before the first entry: nothing; far in the future: the balance now.
    assert await balance_at(api, auth, wallet["id"], before - timedelta(days=400)) == "0.00"
    assert await balance_at(api, auth, wallet["id"], now() + timedelta(days=400)) == "0.00"
    for at in ("yesterday", "0001-01-01T00:00:00+14:00"):
        resp = await api.get(f"/wallets/{wallet['id']}/balance", params={"at": at}, headers=auth)
        assert_problem(resp, 422, "VALIDATION_ERROR")


async def test_statement_periods_and_who_may_read_them(api: httpx.AsyncClient) -> None:
    _, auth, wallet = await funded_user(api, "10.00")
    _, stranger, _ = await funded_user(api, "0")
    resp = await statement(api, auth, wallet["id"])  # by default: this calendar month
    assert resp.status_code == 200, resp.text
    body = resp.json()
    first = now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert datetime.fromisoformat(body["from"]) == first
    assert datetime.fromisoformat(body["to"]) == (first + timedelta(days=32)).replace(day=1)
    assert [e["amount"] for e in body["entries"]] == ["10.00"]
    t = now()
    for q in (
        {"from": iso(t), "to": iso(t - timedelta(seconds=1))},  # to before from
        {"from": iso(t - timedelta(days=367)), "to": iso(t)},  # more than 366 days
        {"from": "2026-13-01T00:00:00Z"},
        {"from": "2026-01-01T00:00:00"},  # no offset: not RFC 3339
        {"from": "0001-01-01T00:00:00+14:00"},  # before year 1 in UTC
        {"to": "9999-12-31T23:59:59-14:00"},  # after year 9999 in UTC
    ):
        assert_problem(await statement(api, auth, wallet["id"], **q), 422, "VALIDATION_ERROR")
    ok = await statement(
        api, auth, wallet["id"], **{"from": iso(t - timedelta(days=366)), "to": iso(t)}
    )
    assert ok.status_code == 200
    for path in ("statement", "balance", "limits"):
        resp = await api.get(f"/wallets/{wallet['id']}/{path}", headers=stranger)
        assert_problem(resp, 404, "WALLET_NOT_FOUND")
    assert (await api.get(f"/wallets/{wallet['id']}/statement")).status_code == 401


async def test_csv_and_pdf_say_what_json_says(api: httpx.AsyncClient, tmp_path: Path) -> None:
    user, auth, wallet = await funded_user(api, "80.00")
    _, _, other = await funded_user(api, "0")
    for amount, what in (("12.34", "lunch, with a comma"), ("7.00", 'a "quoted" word')):
        resp = await move(
            api, auth, "transfer", wallet["id"], other["id"], amount, description=what
        )
        assert resp.status_code == 201, resp.text
    body = (await statement(api, auth, wallet["id"])).json()

    resp = await statement(api, auth, wallet["id"], "text/csv")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in resp.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(resp.text)))
    header = (
        "at,transaction_id,type,operation,amount,balance_after,description,counterparty_wallet_id"
    )
    assert rows[0] == header.split(",")
    assert rows[1:] == [
        [e[k] or "" for k in rows[0]] for e in body["entries"]
    ]  # the same values, in the same order

    resp = await statement(api, auth, wallet["id"], "application/pdf")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/pdf"
    assert resp.content.startswith(b"%PDF")
    pdf = tmp_path / "statement.pdf"
    pdf.write_bytes(resp.content)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    for needle in (
        user["full_name"],
        wallet["id"],
        "Opening balance",
        "0.00 USD",
        "Closing balance",
        f"{body['closing_balance']} USD",
        "lunch, with a comma",
        "-12.34",
        "-7.00",
        "80.00",
    ):
        assert needle in text, needle
    # One page, drawn (the chart included): pdftoppm renders it without complaint.
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "p")],
        check=True,
    )
    assert list(tmp_path.glob("p*.png"))


# The arithmetic over random sequences of money movements (a property test): each
# example runs against the real stack, so they are few; the seed is fixed.
OPS = st.lists(
    st.tuples(
        st.sampled_from(["deposit", "transfer", "payment", "too_much", "refund"]),
        st.integers(min_value=1, max_value=4000),
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=OPS)
def test_statements_add_up_to_the_ledger_over_random_operations(
    stack: Stack, ops: list[tuple[str, int]]
) -> None:
    asyncio.run(_random_operations(stack, ops))


async def _random_operations(stack: Stack, ops: list[tuple[str, int]]) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as api:
        _, auth, wallet = await funded_user(api, "0")
        _, _, friend = await funded_user(api, "0")
        _, m_auth, shop = await funded_user(api, "0", account_type="merchant")
        start = now()
        instants: list[tuple[datetime, str]] = []
        payments: list[str] = []
        for kind, n in ops:
            amount = f"{n // 100}.{n % 100:02d}"
            if kind == "deposit":
                resp = await deposit(api, auth, wallet["id"], amount)
            elif kind in ("transfer", "too_much"):
                if kind == "too_much":
                    amount = "9999.00"  # refused: nothing moves, no entry
                resp = await move(api, auth, "transfer", wallet["id"], friend["id"], amount)
            elif kind == "payment":
                resp = await move(api, auth, "payment", wallet["id"], shop["id"], amount)
                if resp.status_code == 201:
                    payments.append(resp.json()["id"])
            else:
                if not payments:
                    continue
                resp = await api.post(
                    f"/transactions/{payments.pop()}/refund",
                    json={"amount": "0.01"},
                    headers=m_auth,
                )
            assert resp.status_code in (201, 400), resp.text
            current = (await api.get(f"/wallets/{wallet['id']}", headers=auth)).json()["balance"]
            instants.append((now(), current))
        period = {"from": iso(start), "to": iso(now())}
        body = (await statement(api, auth, wallet["id"], **period)).json()
        check_adds_up(body)
        ledger = await _ledger_sum(stack, wallet["id"])
        assert cents(body["closing_balance"]) == ledger
        if instants:
            assert ledger == cents(instants[-1][1])
        for at, want in instants:
            assert await balance_at(api, auth, wallet["id"], at) == want


async def _ledger_sum(stack: Stack, wallet_id: str) -> int:
    from tests.e2e.money import db_fetch, uid

    rows = await db_fetch(
        stack,
        "SELECT coalesce(sum(amount), 0) AS s FROM wallets.ledger_entries WHERE wallet_id = $1",
        uid(wallet_id),
    )
    return int(rows[0]["s"])


async def test_a_wallet_without_entries_has_an_empty_statement(api: httpx.AsyncClient) -> None:
    _, auth = await user_with_token(api)
    wallet = await wallet_for(api, auth, "JPY")
    body = (await statement(api, auth, wallet["id"])).json()
    assert (body["opening_balance"], body["closing_balance"], body["entries"]) == ("0", "0", [])
    resp = await statement(api, auth, wallet["id"], "text/csv")
    assert resp.text.strip().count("\n") == 0  # the header alone
    resp = await statement(api, auth, wallet["id"], "application/pdf")
    assert resp.content.startswith(b"%PDF")
