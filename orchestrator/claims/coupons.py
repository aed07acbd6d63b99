"""The service layer: what the HTTP views (and the replay tool) ask for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.claims.admission import Admission
from orchestrator.claims.duplicates import Lead, RepeatClaims
from orchestrator.claims.outages import StoresAway
from orchestrator.claims.soldout import SoldOutMemo
from orchestrator.logs import SAGA_ID
from orchestrator.metrics import REPEAT_CLAIMS_ANSWERED, SOLD_OUT_MEMO_HITS, reason
from orchestrator.saga.engine import SagaEngine, Stands, new_saga_id
from sagas.claim import ClaimPayload
from sagas.definition import SagaDefinition, Verdict
from sagas.errors import (
    AlreadyClaimed,
    ClaimInFlight,
    CouponNotFound,
    InDoubt,
    OutOfStock,
    StoreUnavailable,
)
from sagas.ports import Claimed, ClaimLedger, CouponStock, Inventory, SagaLog
from sagas.records import SagaRecord
from sagas.timestamps import to_the_millisecond


@dataclass(frozen=True)
class CouponDetails:
    stock: CouponStock
    claimed_by: list[str]


async def read_details(inventory: Inventory, claims: ClaimLedger, name: str) -> CouponDetails:
    """A coupon's stock and claimants, never showing more than its amount between them.

    The two stores cannot be read at one instant, so the order is what makes it hold. A
    saga takes its unit before it writes its claim document and erases the document
    before it gives the unit back: at every instant, remaining + documents <= amount.
    So the documents are read first and the stock second. Each document read was there
    at some instant before the stock read, and its unit was taken then; it is still taken
    at the stock read unless a compensation erased the document and gave the unit back in
    between. Only then can the sum exceed the amount; the documents are read again and
    only those in both reads are kept. A document, once erased, does not come back (bar
    the drift the audit repairs), so each of those existed throughout, its unit taken
    when the stock was read. Reading the stock first instead would count every claim
    written after it on top of the units it already shows.
    """
    claimants = await claims.claimants(name)
    stock = await inventory.get_coupon(name)
    if stock is None:
        raise CouponNotFound(name)
    if stock.remaining_amount + len(claimants) > stock.amount:
        still = await claims.claimants(name)
        claimants = {saga: user for saga, user in claimants.items() if saga in still}
    return CouponDetails(stock, list(claimants.values()))


def still_open(
    saga_log: SagaLog, definition: SagaDefinition[Any]
) -> Callable[[str], Awaitable[bool]]:
    """Whether a saga answered in doubt is still unsettled, by its record: also when the
    log cannot tell; not once its record is gone (a claim then finds out for itself)."""

    async def check(saga_id: str) -> bool:
        try:
            record = await saga_log.load(saga_id)
        except StoreUnavailable:
            return True
        return record is not None and definition.verdict(record) is Verdict.OPEN

    return check


class CouponService:
    def __init__(
        self,
        inventory: Inventory,
        claims: ClaimLedger,
        engine: SagaEngine,
        claim: SagaDefinition[ClaimPayload],
        sold_out: SoldOutMemo,
        admission: Admission,
        repeats: RepeatClaims,
        stores_away: StoresAway,
        saga_log: SagaLog,
        *,
        finish_seconds: float,
    ) -> None:
        """`finish_seconds`: how long `close` lets sagas already answered finish their
        last steps (a confirm's tries); those still running are left to recovery.
        `saga_log`: read to tell whether another saga of the user's is being undone."""
        self._inventory = inventory
        self._claims = claims
        self._engine = engine
        self._stores_away = stores_away
        self._saga_log = saga_log
        self._claim_saga = claim
        self._sold_out = sold_out
        self._admission = admission
        self._repeats = repeats
        self._finish_seconds = finish_seconds
        self._running: set[asyncio.Future[SagaRecord]] = set()

    async def create(self, name: str, amount: int) -> CouponStock:
        return await self._inventory.create_coupon(name, amount)

    async def details(self, name: str) -> CouponDetails:
        return await read_details(self._inventory, self._claims, name)

    async def claim(self, user_id: str, coupon_name: str) -> Claimed:
        if (known := await self._repeats.known_answer(user_id, coupon_name)) is not None:
            REPEAT_CLAIMS_ANSWERED.labels(reason(known)).inc()
            raise known
        await self._refuse_if_sold_out(user_id, coupon_name)
        with self._repeats.leading(user_id, coupon_name) as lead:
            return await self._claim(user_id, coupon_name, lead)

    async def _claim(self, user_id: str, coupon_name: str, lead: Lead | None) -> Claimed:
        self._stores_away.refuse_if_away()
        await self._admission.enter()
        try:  # it may have sold out, or a store gone, while this claim waited its turn
            self._stores_away.refuse_if_away()
            await self._refuse_if_sold_out(user_id, coupon_name)
        except BaseException:
            self._admission.leave()  # no saga will hold the slot
            raise
        payload = ClaimPayload(user_id, coupon_name, to_the_millisecond(datetime.now(UTC)))
        # Named here, so the answer can carry the saga's id whatever the outcome.
        saga_id = new_saga_id()
        SAGA_ID.set(saga_id)
        stands: asyncio.Future[SagaRecord] = asyncio.get_running_loop().create_future()
        saga = asyncio.ensure_future(self._run_saga(payload, saga_id, stands.set_result))
        saga.add_done_callback(self._admission.leave)  # a slot until its very end
        self._running.add(saga)
        saga.add_done_callback(self._running.discard)
        if lead is not None:
            lead.follow(saga)
        # The answer comes as soon as the claim stands; the saga finishes on its own (it
        # only goes forward from there). Not cancelled with this wait: a client that hangs
        # up must not cut a saga (or its compensation) short.
        await asyncio.wait({stands, saga}, return_when=asyncio.FIRST_COMPLETED)
        record = stands.result() if stands.done() else saga.result()
        return Claimed(record.saga_id, user_id, coupon_name, payload.claimed_at)

    async def close(self) -> None:
        """Let the sagas already answered finish, for up to `finish_seconds`; stop the
        rest before the stores close under them (recovery finishes them)."""
        await self._stores_away.close()
        if not self._running:
            return
        _, unfinished = await asyncio.wait(self._running, timeout=self._finish_seconds)
        for saga in unfinished:
            saga.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)

    async def _run_saga(self, payload: ClaimPayload, saga_id: str, stands: Stands) -> SagaRecord:
        try:
            return await self._engine.run(self._claim_saga, payload, saga_id, stands=stands)
        except OutOfStock:
            # Within the slot, so the claims admitted next already find the memo taught.
            await self._sold_out.learn(payload.coupon_name)
            raise
        except ClaimInFlight as in_flight:
            raise await self._in_flight(in_flight) from None
        except (StoreUnavailable, InDoubt) as error:
            self._stores_away.saw(error)
            raise

    async def _in_flight(self, in_flight: ClaimInFlight) -> Exception:
        """The answer to a claim whose user's unit is held by another saga of theirs: a
        claim in flight is already claimed, unless that saga is being undone (its store
        was away): then the user's claim is in doubt until the undo is done."""
        try:
            holder = await self._saga_log.load(in_flight.holder)
        except StoreUnavailable:
            holder = None  # nothing known against "in flight"
        if holder is not None and holder.status.in_flight and holder.compensating:
            return InDoubt(in_flight.holder, "another claim of this user's is being undone")
        return AlreadyClaimed(in_flight.coupon_name)

    async def _refuse_if_sold_out(self, user_id: str, coupon_name: str) -> None:
        """Answer from the sold-out memo when it knows the answer: no saga, no write."""
        sold_out = await self._sold_out.get(coupon_name)
        if sold_out is None:
            return
        answer = await sold_out.answer(self._inventory, coupon_name, user_id)
        if answer is not None:
            SOLD_OUT_MEMO_HITS.labels(reason(answer)).inc()
            raise answer
