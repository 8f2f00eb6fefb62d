"""The MongoDB wire-protocol server (FerretDB locally, or MONGODB_URL) through PyMongo."""

from __future__ import annotations

import uuid

import pytest
from pymongo.errors import DuplicateKeyError

from paysys.kit.mongo import make_mongo
from tests.conftest import Infra


async def test_insert_find_with_filter_and_sort_and_unique_index(infra: Infra) -> None:
    client, db = make_mongo(infra.mongodb_url, f"kit_{uuid.uuid4().hex[:8]}")
    try:
        coll = db.things
        await coll.create_index("key", unique=True)
        await coll.insert_many(
            [{"key": f"k{i}", "n": i, "kind": "even" if i % 2 == 0 else "odd"} for i in range(10)]
        )
        found = [d["n"] async for d in coll.find({"kind": "even"}).sort("n", -1)]
        assert found == [8, 6, 4, 2, 0]
        with pytest.raises(DuplicateKeyError):
            await coll.insert_one({"key": "k3", "n": 99})
        assert await coll.count_documents({}) == 10
    finally:
        await client.drop_database(db.name)
        await client.close()
