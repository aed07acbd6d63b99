"""Claim history in MongoDB: one document per claim, never embedded in a coupon."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from pymongo.write_concern import WriteConcern

from sagas.errors import AlreadyClaimed
from sagas.ports import Claim
from services.failures import unavailable_on_failure

CLAIMS_COLLECTION = "claims"


class MongoClaims:
    """Writes are acknowledged by a majority, so a claim we report survives a failover."""

    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._claims = database.get_collection(
            CLAIMS_COLLECTION, write_concern=WriteConcern(w="majority")
        )

    async def ensure_indexes(self) -> None:
        """Idempotent: creating an index that exists with the same spec is a no-op."""
        with unavailable_on_failure("mongodb"):
            await self._claims.create_index(
                [("user_id", ASCENDING), ("coupon_name", ASCENDING)],
                unique=True,
                name="one_claim_per_user",
            )
            await self._claims.create_index([("saga_id", ASCENDING)], unique=True, name="saga_id")
            await self._claims.create_index(
                [("coupon_name", ASCENDING), ("claimed_at", ASCENDING), ("_id", ASCENDING)],
                name="claims_by_coupon_oldest_first",
            )

    async def record(
        self, saga_id: str, user_id: str, coupon_name: str, claimed_at: datetime
    ) -> datetime:
        """Insert the claim; a duplicate carrying this saga id is a replay and succeeds.

        Returns the claim time as stored: BSON keeps milliseconds.
        """
        claimed_at = claimed_at.replace(microsecond=claimed_at.microsecond // 1000 * 1000)
        document = {
            "user_id": user_id,
            "coupon_name": coupon_name,
            "saga_id": saga_id,
            "claimed_at": claimed_at,
        }
        with unavailable_on_failure("mongodb"):
            try:
                await self._claims.insert_one(document)
                return claimed_at
            except DuplicateKeyError:
                mine = await self._claims.find_one({"saga_id": saga_id}, {"claimed_at": 1})
        if mine is None:
            raise AlreadyClaimed(coupon_name)
        return _utc(mine["claimed_at"])

    async def erase(self, saga_id: str) -> bool:
        with unavailable_on_failure("mongodb"):
            result = await self._claims.delete_one({"saga_id": saga_id})
        return result.deleted_count == 1

    async def exists(self, saga_id: str) -> bool:
        with unavailable_on_failure("mongodb"):
            return await self._claims.find_one({"saga_id": saga_id}, {"_id": 1}) is not None

    async def claimants(self, coupon_name: str) -> dict[str, str]:
        """Saga id -> user id of each claim of the coupon, oldest claim first."""
        cursor = self._claims.find(
            {"coupon_name": coupon_name}, {"saga_id": 1, "user_id": 1, "_id": 0}
        ).sort([("claimed_at", ASCENDING), ("_id", ASCENDING)])
        with unavailable_on_failure("mongodb"):
            return {document["saga_id"]: document["user_id"] async for document in cursor}

    async def claims(self, coupon_name: str) -> list[Claim]:
        cursor = self._claims.find(
            {"coupon_name": coupon_name},
            {"_id": 0, "saga_id": 1, "user_id": 1, "coupon_name": 1, "claimed_at": 1},
        )
        with unavailable_on_failure("mongodb"):
            return [
                Claim(doc["saga_id"], doc["user_id"], doc["coupon_name"], _utc(doc["claimed_at"]))
                async for doc in cursor
            ]


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
