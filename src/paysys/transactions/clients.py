"""Calls from the saga to wallets, payment-gateway and users. Every state-changing call
carries an idempotency key derived from the transaction id, so retrying it is harmless:
timeouts and 5xx are retried with backoff; what still has no answer is 'unknown'."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import structlog

from paysys.kit.errors import AppError
from paysys.kit.http import ServiceClient, ServiceResponse, ServiceUnreachable

log = structlog.get_logger()


class StepFailed(Exception):
    """A definite business refusal (the step did not happen)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# What wallets may answer to a balance change that did not happen (and never will).
REFUSALS = ("INSUFFICIENT_FUNDS", "WALLET_INACTIVE", "CURRENCY_MISMATCH", "LIMIT_EXCEEDED")
# A capture wallets cannot make (its hold released already, or holding less): not a
# refusal, no definite outcome (as a single capture's 409 or 422).
NOT_CAPTURABLE = "NOT_CAPTURABLE"


class OutcomeUnknown(Exception):
    """No definite answer after the retries: the step may or may not have happened."""


class Passthrough(AppError):
    """A client error from a downstream service, relayed as it is (e.g. a card that
    fails the Luhn check: 422 VALIDATION_ERROR)."""


@dataclass
class Clients:
    wallets: ServiceClient
    payments: ServiceClient
    users: ServiceClient
    attempts: int = 3
    # What never changes, once read: a wallet's owner and currency, a user's account
    # type. Kept in memory, so a transfer between known wallets validates without a call
    # (a wallet's status, which does change, is checked by wallets inside the move).
    _facts: OrderedDict[uuid.UUID, dict[str, Any]] = field(default_factory=OrderedDict)
    _account_types: OrderedDict[uuid.UUID, str] = field(default_factory=OrderedDict)
    max_cached: int = 100_000
    # The reads of wallets not known yet, while they run: one per wallet at a time.
    _reading: dict[uuid.UUID, asyncio.Task[dict[str, Any] | None]] = field(default_factory=dict)

    async def _call(
        self,
        client: ServiceClient,
        method: str,
        path: str,
        json: Any = None,
        user_id: str | None = None,
    ) -> ServiceResponse:
        delay = 0.2
        for attempt in range(1, self.attempts + 1):
            try:
                resp = await client.request(method, path, json=json, user_id=user_id)
                if resp.status < 500:
                    return resp
                log.warning("step_call_5xx", path=path, status=resp.status, attempt=attempt)
            except ServiceUnreachable as exc:
                log.warning("step_call_unreachable", path=path, error=str(exc), attempt=attempt)
            if attempt < self.attempts:
                await asyncio.sleep(delay)
                delay *= 3
        raise OutcomeUnknown(f"{method} {path}")

    # -- wallets

    async def wallet(self, wallet_id: uuid.UUID) -> dict[str, Any] | None:
        resp = await self._call(self.wallets, "GET", f"/internal/wallets/{wallet_id}")
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise OutcomeUnknown(f"wallet read answered {resp.status}")
        return resp.body

    async def wallet_facts(self, wallet_id: uuid.UUID) -> dict[str, Any] | None:
        """A wallet's id, owner and currency (cached: they never change). Requests that
        name a wallet while it is being read wait for that read: a cold instance under
        load otherwise asked wallets once per request (331 reads of 40 wallets in the
        first second of a bulk run)."""
        facts = self._facts.get(wallet_id)
        if facts is not None:
            return facts
        reading = self._reading.get(wallet_id)
        if reading is None:
            reading = asyncio.ensure_future(self._read_facts(wallet_id))
            self._reading[wallet_id] = reading
            reading.add_done_callback(lambda done: self._read_done(wallet_id, done))
        # Shielded: a caller that goes away leaves the read to the others.
        return await asyncio.shield(reading)

    async def _read_facts(self, wallet_id: uuid.UUID) -> dict[str, Any] | None:
        wallet = await self.wallet(wallet_id)
        if wallet is None:
            return None
        facts = {k: wallet[k] for k in ("id", "user_id", "currency")}
        _remember(self._facts, wallet_id, facts, self.max_cached)
        return facts

    def _read_done(self, wallet_id: uuid.UUID, done: asyncio.Task[Any]) -> None:
        self._reading.pop(wallet_id, None)
        if not done.cancelled():
            done.exception()  # seen, even when every caller went away before it ended

    def known_facts(self, *wallet_ids: uuid.UUID) -> list[dict[str, Any]] | None:
        """The cached facts of every one of these wallets, or None if one is not cached:
        no await (and no task per wallet) when they all are, as a batch's items are."""
        facts = [self._facts.get(w) for w in wallet_ids]
        return None if None in facts else facts  # type: ignore[return-value]

    async def _funds(self, wallet_id: uuid.UUID, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = await self._call(self.wallets, "POST", f"/wallets/{wallet_id}/{path}", body)
        if resp.status == 200:
            return resp.body
        code = (resp.body or {}).get("code", "") if isinstance(resp.body, dict) else ""
        if resp.status == 400 and code in (*REFUSALS, "CREDIT_FENCED"):
            raise StepFailed(code)
        if resp.status == 404:
            raise StepFailed("WALLET_INACTIVE")
        raise OutcomeUnknown(f"{path} answered {resp.status} {code}")

    async def transfer(self, tx: Any) -> None:
        """The whole move of a transfer or payment, one wallets operation: returns once
        the money moved (now or on an earlier call), raises StepFailed on a refusal
        (nothing moved, and asked again it stays refused)."""
        resp = await self._call(self.wallets, "POST", "/internal/transfers", _move_body(tx))
        _moved_or_refused(resp, "transfer")

    async def transfer_batch(self, txs: list[Any]) -> list[str | None]:
        """The moves of many transfers and payments, one wallets call (one database
        transaction there), applied in order: per transaction, None when the money
        moved (now or on an earlier call), else the code of its refusal."""
        # each move's events carry its own request's id, not the group's
        body = {"items": [_move_body(tx) | {"correlation_id": tx.correlation_id} for tx in txs]}
        resp = await self._call(self.wallets, "POST", "/internal/transfers/batch", body)
        if resp.status != 200 or not isinstance(resp.body, dict):
            raise OutcomeUnknown(f"transfer batch answered {resp.status}")
        return [_refusal(item) for item in resp.body["items"]]

    async def hold_batch(self, txs: list[Any]) -> list[str | None]:
        """The holds of many authorizations (manual-capture payments), one wallets call
        (one database transaction there), in order: per transaction, None when its
        money is held (now or on an earlier call), else the code of its refusal."""
        items = [
            {k: v for k, v in _move_body(tx).items() if k != "kind"}
            | {"correlation_id": tx.correlation_id}
            for tx in txs
        ]
        resp = await self._call(self.wallets, "POST", "/internal/holds/batch", {"items": items})
        if resp.status != 200 or not isinstance(resp.body, dict):
            raise OutcomeUnknown(f"hold batch answered {resp.status}")
        return [_refusal(item) for item in resp.body["items"]]

    async def capture_batch(self, txs: list[Any]) -> list[str | None]:
        """The captures of many authorizations (each its captured amount), one wallets
        call (one database transaction there), in order: per transaction, None when
        captured (now or on an earlier call), else the code of its refusal (the hold then
        stays as it was), or NOT_CAPTURABLE (no definite answer for the transaction: it
        stays in flight)."""
        items = [
            {
                "transaction_id": str(tx.id),
                "amount_minor": tx.captured_amount,
                "correlation_id": tx.correlation_id,
            }
            for tx in txs
        ]
        resp = await self._call(self.wallets, "POST", "/internal/holds/captures", {"items": items})
        if resp.status != 200 or not isinstance(resp.body, dict):
            raise OutcomeUnknown(f"capture batch answered {resp.status}")
        return [
            NOT_CAPTURABLE
            if item["status"] == "ended" or item.get("code") == "AMOUNT_EXCEEDS_AUTHORIZED"
            else _refusal(item)
            for item in resp.body["items"]
        ]

    # -- holds: a manual-capture payment's money, reserved, then captured or released

    async def hold(self, tx: Any) -> None:
        """Reserves the payment's amount on its source (once per transaction id):
        raises StepFailed on a refusal, which stays refused when asked again."""
        body = {k: v for k, v in _move_body(tx).items() if k != "kind"}
        resp = await self._call(self.wallets, "POST", "/internal/holds", body)
        _moved_or_refused(resp, "hold")

    async def capture(self, tx: Any) -> None:
        """Takes the transaction's captured amount of its hold (once): raises StepFailed
        (WALLET_INACTIVE) when a wallet is inactive; the hold then stays as it was."""
        body = {"amount_minor": tx.captured_amount}
        resp = await self._call(self.wallets, "POST", f"/internal/holds/{tx.id}/capture", body)
        _moved_or_refused(resp, "capture")

    async def release(self, tx: Any) -> None:
        """Gives the transaction's hold back to what is available (once)."""
        resp = await self._call(self.wallets, "POST", f"/internal/holds/{tx.id}/release")
        if resp.status != 200:
            raise OutcomeUnknown(f"release answered {resp.status}")

    # Every leg names its currency: a wallet in another one refuses it, so the same
    # digits can never be read as ¥ on one side and $ on the other.

    async def credit(
        self, wallet_id: uuid.UUID, tx: Any, amount: str, currency: str
    ) -> dict[str, Any]:
        body = {"amount": amount, "currency": currency, "transaction_id": str(tx.id)}
        body |= _about(tx)
        return await self._funds(wallet_id, "add-funds", body)

    async def debit(
        self, wallet_id: uuid.UUID, tx: Any, amount: str, currency: str
    ) -> dict[str, Any]:
        body = {"amount": amount, "currency": currency, "transaction_id": str(tx.id)}
        body |= _about(tx)
        return await self._funds(wallet_id, "deduct-funds", body)

    async def give_back(
        self, wallet_id: uuid.UUID, tx: Any, amount: str, currency: str
    ) -> dict[str, Any]:
        """The compensation of a debit: allowed even on a wallet deactivated since."""
        body = {
            "amount": amount,
            "currency": currency,
            "transaction_id": str(tx.id),
            "operation": "refund",
        } | _about(tx)
        return await self._funds(wallet_id, "add-funds", body)

    async def fence_credit(self, tx: uuid.UUID) -> bool:
        """Makes the credit of `tx` impossible from now on; True if it already happened."""
        resp = await self._call(
            self.wallets, "POST", "/internal/wallets/credit-fence", {"transaction_id": str(tx)}
        )
        if resp.status != 200:
            raise OutcomeUnknown(f"credit fence answered {resp.status}")
        return bool(resp.body["credited"])

    # -- payment gateway

    async def validate_card(self, card: dict[str, Any]) -> None:
        resp = await self._call(self.payments, "POST", "/payments/validate-card", card)
        if resp.status != 200:
            body = resp.body if isinstance(resp.body, dict) else {}
            raise Passthrough(
                body.get("detail", "The card is not valid."),
                code=body.get("code", "VALIDATION_ERROR"),
                status=resp.status,
                **({"errors": body["errors"]} if "errors" in body else {}),
            )

    async def charge(
        self, tx: uuid.UUID, amount: str, currency: str, card: dict[str, Any]
    ) -> dict[str, Any]:
        resp = await self._call(
            self.payments,
            "POST",
            "/payments/charge",
            {"transaction_id": str(tx), "amount": amount, "currency": currency, "card": card},
        )
        if resp.status != 200:
            raise OutcomeUnknown(f"charge answered {resp.status}")
        return resp.body

    async def void(self, tx: uuid.UUID, amount: str, currency: str) -> dict[str, Any]:
        resp = await self._call(
            self.payments,
            "POST",
            "/payments/void",
            {"transaction_id": str(tx), "amount": amount, "currency": currency},
        )
        if resp.status != 200:
            raise OutcomeUnknown(f"void answered {resp.status}")
        return resp.body

    async def refund_card(self, tx: uuid.UUID) -> dict[str, Any]:
        resp = await self._call(self.payments, "POST", f"/payments/{tx}/refund")
        if resp.status != 200:
            raise OutcomeUnknown(f"card refund answered {resp.status}")
        return resp.body

    async def refund_to_card(self, charged_tx: uuid.UUID, refund: uuid.UUID, amount: int) -> str:
        """Part of a deposit's charge back to its card, once per refund id: the card
        refund's status ("succeeded" or "failed")."""
        resp = await self._call(
            self.payments,
            "POST",
            f"/payments/{charged_tx}/refunds",
            {"refund_id": str(refund), "amount_minor": amount},
        )
        if resp.status != 200 or not isinstance(resp.body, dict):
            raise OutcomeUnknown(f"card refund answered {resp.status}")
        return str(resp.body["status"])

    # -- users

    async def account_type(self, user_id: uuid.UUID) -> str | None:
        """A user's account type (cached: it never changes)."""
        if (known := self._account_types.get(user_id)) is not None:
            return known
        resp = await self._call(self.users, "GET", f"/internal/users/{user_id}")
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise OutcomeUnknown(f"user read answered {resp.status}")
        account_type = str(resp.body["account_type"])
        _remember(self._account_types, user_id, account_type, self.max_cached)
        return account_type


def _move_body(tx: Any) -> dict[str, Any]:
    return {
        "transaction_id": str(tx.id),
        "source_wallet_id": str(tx.source_wallet_id),
        "destination_wallet_id": str(tx.destination_wallet_id),
        "amount_minor": tx.amount,
        "currency": tx.currency,
        "kind": tx.type,
        "description": tx.description,
    }


def _refusal(item: dict[str, Any]) -> str | None:
    """A batch item's outcome: None when it went through (moved, held), else its code."""
    if item["status"] != "refused":
        return None
    code = item.get("code")
    return code if code in REFUSALS else "WALLET_INACTIVE"  # a wallet gone since validation


def _about(tx: Any) -> dict[str, Any]:
    """What a card-side balance change is for, for the wallet's statement (the other
    side is a card: no counterparty wallet)."""
    return {"type": tx.type, "description": tx.description}


def _moved_or_refused(resp: ServiceResponse, what: str) -> None:
    """Returns on 200; a definite refusal raises StepFailed, anything else
    OutcomeUnknown."""
    if resp.status == 200:
        return
    code = (resp.body or {}).get("code", "") if isinstance(resp.body, dict) else ""
    if resp.status == 400 and code in REFUSALS:
        raise StepFailed(code)
    if resp.status == 404:
        raise StepFailed("WALLET_INACTIVE")  # a wallet gone since validation
    raise OutcomeUnknown(f"{what} answered {resp.status} {code}")


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any, limit: int) -> None:
    cache[key] = value
    if len(cache) > limit:
        cache.popitem(last=False)
