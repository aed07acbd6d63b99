"""Claim history in MongoDB: one document per claim, never embedded in a coupon."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    DuplicateKeyError,
    WriteConcernError,
    WriteError,
    WTimeoutError,
)
from pymongo.write_concern import WriteConcern

from sagas.errors import AlreadyClaimed, SagaConflict, StoreNotSetUp
from sagas.ports import Claimed
from sagas.timestamps import to_the_millisecond
from services.failures import classified, unavailable_on_failure
from services.mongo_client import CurrentMongoClient

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


Params = ParamSpec("Params")
Result = TypeVar("Result")


def _to_its_end(
    method: Callable[Concatenate[MongoClaims, Params], Awaitable[Result]],
) -> Callable[Concatenate[MongoClaims, Params], Coroutine[Any, Any, Result]]:
    """The method runs through `CurrentMongoClient.run`: its caller may stop waiting, but
    nothing cancels PyMongo (services/mongo_client.py says why)."""

    async def run(self: MongoClaims, /, *args: Params.args, **kwargs: Params.kwargs) -> Result:
        return await self._client.run(lambda: method(self, *args, **kwargs))

    functools.update_wrapper(run, method)
    return run


class MongoClaims:
    """Writes are acknowledged by a majority, so a claim we report survives a failover.
    On a replica set, a majority of its voting members; on a standalone server (a mongod
    without a replica set, FerretDB) the majority is that server alone: the write is
    acknowledged once it is in its journal (FerretDB: committed in its PostgreSQL), and
    there is no second copy to fail over to.

    Every call reads the current client (it may be replaced) and runs to its own end."""

    def __init__(self, client: CurrentMongoClient) -> None:
        self._client = client
        self._collection: AsyncCollection[dict[str, Any]] | None = None

    @property
    def _claims(self) -> AsyncCollection[dict[str, Any]]:
        database = self._client.database
        if self._collection is None or self._collection.database is not database:
            self._collection = _claims_collection(database)
        return self._collection

    @_to_its_end
    async def ensure_indexes(self) -> None:
        """Idempotent: creating an index that exists with the same spec is a no-op."""
        with unavailable_on_failure("mongodb"):
            for name, (keys, unique) in _INDEXES.items():
                await self._claims.create_index(keys, unique=unique, name=name)

    @_to_its_end
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

    @_to_its_end
    async def record(
        self, saga_id: str, user_id: str, coupon_name: str, claimed_at: datetime
    ) -> datetime:
        """Insert the claim; a duplicate carrying this saga id is a replay and succeeds.

        Returns the claim time as stored: BSON keeps milliseconds. Raises SagaConflict
        when the saga's claim was erased already (its tombstone holds the saga id).
        """
        claim = ClaimRequest(saga_id, user_id, coupon_name, claimed_at)
        with unavailable_on_failure("mongodb"):
            try:
                await self._claims.insert_one(claim.document())
                return claim.stored_at
            except DuplicateKeyError:
                mine = await self._claims.find_one(
                    {"saga_id": saga_id}, {"claimed_at": 1, "erased": 1}
                )
        return _on_duplicate(claim, mine)

    @_to_its_end
    async def record_many(self, claims: Sequence[ClaimRequest]) -> list[datetime | Exception]:
        """`record` for each claim, in one unordered insert: each claim's claim time as
        stored, or the error `record` would have raised for it. Only the claims the
        insert refused as duplicates cost one more round trip (one read for all of
        them). A failure of the insert itself raises, for all of them."""
        documents = [claim.document() for claim in claims]
        answers: list[datetime | Exception] = [claim.stored_at for claim in claims]
        with unavailable_on_failure("mongodb"):
            try:
                await self._claims.insert_many(documents, ordered=False)
                return answers
            except BulkWriteError as error:
                refused = error.details
        duplicates = []
        for write_error in refused.get("writeErrors", []):
            at = write_error["index"]
            if write_error["code"] in _DUPLICATE_KEY_CODES:
                duplicates.append(at)
            else:
                answers[at] = classified("mongodb", _as_single_error(write_error))
        for concern_error in refused.get("writeConcernErrors", [])[:1]:
            # Not about any one document: each written one is answered as insert_one is.
            refused_at = {write_error["index"] for write_error in refused["writeErrors"]}
            for at in set(range(len(claims))) - refused_at:
                answers[at] = classified("mongodb", _as_concern_error(concern_error))
        if duplicates:
            await self._answer_duplicates(claims, duplicates, answers)
        return answers

    async def _answer_duplicates(
        self,
        claims: Sequence[ClaimRequest],
        duplicates: list[int],
        answers: list[datetime | Exception],
    ) -> None:
        """A duplicate is a replay of its saga (its own claim is there), a tombstone's
        refusal, or another saga's claim: one read tells them apart, for all of them."""
        saga_ids = list({claims[at].saga_id for at in duplicates})
        cursor = self._claims.find(
            {"saga_id": {"$in": saga_ids}}, {"_id": 0, "saga_id": 1, "claimed_at": 1, "erased": 1}
        )
        try:
            stored = {document["saga_id"]: document async for document in cursor}
        except Exception as error:  # each of them gets its own, as from `record`
            for at in duplicates:
                answers[at] = classified("mongodb", error)
            return
        for at in duplicates:
            try:
                answers[at] = _on_duplicate(claims[at], stored.get(claims[at].saga_id))
            except (AlreadyClaimed, SagaConflict) as refusal:
                answers[at] = refusal

    @_to_its_end
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

    @_to_its_end
    async def exists(self, saga_id: str) -> bool:
        with unavailable_on_failure("mongodb"):
            found = await self._claims.find_one(
                {"saga_id": saga_id, "erased": {"$exists": False}}, {"_id": 1}
            )
        return found is not None

    @_to_its_end
    async def claim_of(self, saga_id: str) -> Claimed | None:
        with unavailable_on_failure("mongodb"):
            doc = await self._claims.find_one(
                {"saga_id": saga_id, "erased": {"$exists": False}},
                {"_id": 0, "saga_id": 1, "user_id": 1, "coupon_name": 1, "claimed_at": 1},
            )
        if doc is None:
            return None
        return Claimed(doc["saga_id"], doc["user_id"], doc["coupon_name"], _utc(doc["claimed_at"]))

    @_to_its_end
    async def count(self, coupon_name: str) -> int:
        with unavailable_on_failure("mongodb"):
            return await self._claims.count_documents({"coupon_name": coupon_name})

    @_to_its_end
    async def claimants(self, coupon_name: str) -> dict[str, str]:
        """Saga id -> user id of each claim of the coupon, oldest claim first."""
        cursor = self._claims.find(
            {"coupon_name": coupon_name}, {"saga_id": 1, "user_id": 1, "_id": 0}
        ).sort([("claimed_at", ASCENDING), ("_id", ASCENDING)])
        with unavailable_on_failure("mongodb"):
            return {document["saga_id"]: document["user_id"] async for document in cursor}

    @_to_its_end
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


def _claims_collection(database: AsyncDatabase[dict[str, Any]]) -> AsyncCollection[dict[str, Any]]:
    return database.get_collection(CLAIMS_COLLECTION, write_concern=WriteConcern(w="majority"))


@dataclass(frozen=True)
class ClaimRequest:
    """One saga's claim document, as `record` and a batch of them carry it."""

    saga_id: str
    user_id: str
    coupon_name: str
    claimed_at: datetime

    @property
    def stored_at(self) -> datetime:
        """The claim time as stored: BSON keeps milliseconds."""
        return to_the_millisecond(self.claimed_at)

    def document(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "coupon_name": self.coupon_name,
            "saga_id": self.saga_id,
            "claimed_at": self.stored_at,
        }


# 11000 is the server's; 11001 and 12582 are older forms PyMongo maps the same way.
_DUPLICATE_KEY_CODES = frozenset({11000, 11001, 12582})


def _on_duplicate(claim: ClaimRequest, mine: dict[str, Any] | None) -> datetime:
    """An insert refused by a unique index, given what is stored under the saga's id."""
    if mine is None:
        raise AlreadyClaimed(claim.coupon_name)
    if mine.get("erased"):
        raise SagaConflict(f"saga {claim.saga_id} was compensated; its claim is erased")
    return _utc(mine["claimed_at"])


def _as_single_error(write_error: dict[str, Any]) -> Exception:
    """The error insert_one raises for this write error (PyMongo's own mapping)."""
    return WriteError(write_error.get("errmsg", ""), write_error.get("code"), write_error)


def _as_concern_error(concern_error: dict[str, Any]) -> Exception:
    """The error insert_one raises for this write concern error (PyMongo's own mapping)."""
    message, code = concern_error.get("errmsg", ""), concern_error.get("code")
    if code == 64 or concern_error.get("errInfo", {}).get("wtimeout"):
        return WTimeoutError(message, code, concern_error)
    return WriteConcernError(message, code, concern_error)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
