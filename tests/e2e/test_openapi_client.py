"""The public OpenAPI document is good enough to generate a client from: short
operation ids, and every error readable through one Problem schema."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import Stack, unique_email
from tests.e2e.money import CARD

OPERATIONS = {
    ("post", "/users/register"): "registerUser",
    ("post", "/users/login"): "login",
    ("post", "/transactions/create"): "createTransaction",
    ("post", "/transactions/batch"): "createTransactionBatch",
    ("get", "/wallets/{wallet_id}"): "getWallet",
}


async def test_every_operation_documents_the_gateways_statuses_with_one_problem_schema(
    api: httpx.AsyncClient,
) -> None:
    doc = (await api.get("/openapi.json")).json()
    assert "Problem" in doc["components"]["schemas"]
    ops = [(m, p, op) for p, item in doc["paths"].items() for m, op in item.items()]
    assert len(ops) == 28
    assert len({op["operationId"] for _, _, op in ops}) == 28
    for (method, path), op_id in OPERATIONS.items():
        assert doc["paths"][path][method]["operationId"] == op_id
    for method, path, op in ops:
        statuses = set(op["responses"])
        assert {"413", "422", "429", "503"} <= statuses, (method, path)
        if op.get("security"):
            assert "401" in statuses, (method, path)
        assert "Retry-After" in op["responses"]["429"]["headers"]
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (path, status)


async def test_a_generated_client_reads_a_problems_code(
    api: httpx.AsyncClient, stack: Stack, tmp_path: Path
) -> None:
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps((await api.get("/openapi.json")).json()))
    generator = Path(sys.executable).parent / "openapi-python-client"
    subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(spec),
            "--output-path",
            str(tmp_path / "client"),
            "--meta",
            "none",
        ],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(tmp_path))
    try:
        package = importlib.import_module("client")
        register = importlib.import_module("client.api.users.register_user")
        login = importlib.import_module("client.api.users.login")
        create_wallet = importlib.import_module("client.api.wallets.create_wallet")
        create_tx = importlib.import_module("client.api.transactions.create_transaction")
        models = importlib.import_module("client.models")
    finally:
        sys.path.remove(str(tmp_path))

    email, password = unique_email("generated"), "generated-client-pw"
    anon = package.Client(base_url=stack.gateway)
    user = await register.asyncio(
        client=anon,
        body=models.RegisterIn(email=email, password=password, full_name="Gen Client"),
    )
    assert user.email == email
    tokens = await login.asyncio(client=anon, body=models.LoginIn(email=email, password=password))
    authed = package.AuthenticatedClient(base_url=stack.gateway, token=tokens.access_token)
    wallet = await create_wallet.asyncio(client=authed, body=models.CreateWalletIn())
    declined = {**CARD, "number": "4000000000000002"}
    body = models.DepositIn.from_dict(
        {
            "type": "deposit",
            "destination_wallet_id": str(wallet.id),
            "amount": "5.00",
            "card": declined,
        }
    )
    problem = await create_tx.asyncio(client=authed, body=body)
    assert isinstance(problem, models.Problem)
    assert problem.code == "CARD_DECLINED"
    assert problem.status == 400
