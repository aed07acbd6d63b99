"""Claim history in MongoDB: one document per claim, never embedded in a coupon."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from pymongo.write_concern import WriteConcern

from sagas.errors import AlreadyClaimed, SagaConflict, StoreNotSetUp
from sagas.ports import Claimed
from sagas.timestamps import to_the_millisecond
from services.failures import unavailable_on_failure

CLAIMS_COLLECTION = "claims"
# name -> (keys, unique)
_INDEXES: dict[str, tuple[list[tuple[str, int]], bool]] = {
    "one_claim_per_user": ([("user_id", ASCENDING), ("coupon_name", ASCENDING)], True),
    "saga_id": ([("saga_id", ASCENDING)], True),
    "claims_by_coupon_oldest_first": (
        [("coupon_name", ASCENDING), ("claimed_at", ASCENDING), ("_id", ASCENDING)],
        False,
    ),
}

# An erased claim leaves a tombstone under its saga id, so an insert of the same saga that
# lands later (a timed-out write the server still ran) is refused by the saga_id index and
# takes nothing. No coupon has an empty name, so a tombstone is never read as a claim, and
# its user_id (the saga id) keeps it clear of the one-claim-per-user index.
_NO_COUPON = ""


def _tombstone(saga_id: str) -> dict[str, Any]:
    return {"saga_id": saga_id, "user_id": saga_id, "coupon_name": _NO_COUPON, "erased": True}


class MongoClaims:
    """Writes are acknowledged by a majority, so a claim we report survives a failover."""

    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self._claims = database.get_collection(
            CLAIMS_COLLECTION, write_concern=WriteConcern(w="majority")
        )

    async def ensure_indexes(self) -> None:
        """Idempotent: creating an index that exists with the same spec is a no-op."""
        with unavailable_on_failure("mongodb"):
            for name, (keys, unique) in _INDEXES.items():
                await self._claims.create_index(keys, unique=unique, name=name)

    async def check_indexes(self) -> None:
        """For a client of the service's database: the indexes are the service's to make."""
        with unavailable_on_failure("mongodb"):
            found = await self._claims.index_information()
        missing = [name for name in _INDEXES if name not in found]
        if missing:
            raise StoreNotSetUp(
                "mongodb",
                f"the claims indexes are missing ({', '.join(missing)}); "
                "start coupon-service once against this database to make them",
            )

    async def record(
        self, saga_id: str, user_id: str, coupon_name: str, claimed_at: datetime
    ) -> datetime:
        """Insert the claim; a duplicate carrying this saga id is a replay and succeeds.

        Returns the claim time as stored: BSON keeps milliseconds. Raises SagaConflict
        when the saga's claim was erased already (its tombstone holds the saga id).
        """
        claimed_at = to_the_millisecond(claimed_at)
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
                mine = await self._claims.find_one(
                    {"saga_id": saga_id}, {"claimed_at": 1, "erased": 1}
                )
        if mine is None:
            raise AlreadyClaimed(coupon_name)
        if mine.get("erased"):
            raise SagaConflict(f"saga {saga_id} was compensated; its claim is erased")
        return _utc(mine["claimed_at"])

    async def erase(self, saga_id: str) -> bool:
        """Replace the saga's claim by its tombstone, in one atomic step, whether or not
        the claim is there yet. True if a claim was erased."""
        with unavailable_on_failure("mongodb"):
            try:
                before = await self._replace_by_tombstone(saga_id)
            except DuplicateKeyError:  # the claim was inserted as we upserted: replace it
                before = await self._replace_by_tombstone(saga_id)
        return before is not None and not before.get("erased")

    async def _replace_by_tombstone(self, saga_id: str) -> dict[str, Any] | None:
        return await self._claims.find_one_and_replace(
            {"saga_id": saga_id}, _tombstone(saga_id), upsert=True
        )

    async def exists(self, saga_id: str) -> bool:
        with unavailable_on_failure("mongodb"):
            found = await self._claims.find_one(
                {"saga_id": saga_id, "erased": {"$exists": False}}, {"_id": 1}
            )
        return found is not None

    async def claimants(self, coupon_name: str) -> dict[str, str]:
        """Saga id -> user id of each claim of the coupon, oldest claim first."""
        cursor = self._claims.find(
            {"coupon_name": coupon_name}, {"saga_id": 1, "user_id": 1, "_id": 0}
        ).sort([("claimed_at", ASCENDING), ("_id", ASCENDING)])
        with unavailable_on_failure("mongodb"):
            return {document["saga_id"]: document["user_id"] async for document in cursor}

    async def claims(self, coupon_name: str) -> list[Claimed]:
        cursor = self._claims.find(
            {"coupon_name": coupon_name},
            {"_id": 0, "saga_id": 1, "user_id": 1, "coupon_name": 1, "claimed_at": 1},
        )
        with unavailable_on_failure("mongodb"):
            return [
                Claimed(doc["saga_id"], doc["user_id"], doc["coupon_name"], _utc(doc["claimed_at"]))
                async for doc in cursor
            ]


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
