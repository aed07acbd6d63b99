"""The service layer: what the HTTP views (and the replay tool) ask for."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.admission import Admission
from orchestrator.engine import SagaEngine, new_saga_id
from orchestrator.logs import SAGA_ID
from orchestrator.soldout import SoldOutMemo
from sagas.claim import ClaimPayload
from sagas.definition import SagaDefinition
from sagas.errors import AlreadyClaimed, CouponNotFound, OutOfStock
from sagas.ports import ClaimLedger, CouponStock, Inventory, SagaLog


@dataclass(frozen=True)
class CouponDetails:
    stock: CouponStock
    claimed_by: list[str]


@dataclass(frozen=True)
class Claimed:
    saga_id: str
    user_id: str
    coupon_name: str
    claimed_at: datetime


class CouponService:
    def __init__(
        self,
        inventory: Inventory,
        claims: ClaimLedger,
        saga_log: SagaLog,
        engine: SagaEngine,
        claim: SagaDefinition,
        sold_out: SoldOutMemo,
        admission: Admission,
    ) -> None:
        self.inventory = inventory
        self.claims = claims
        self.saga_log = saga_log
        self._engine = engine
        self._claim_saga = claim
        self._sold_out = sold_out
        self._admission = admission

    async def create(self, name: str, amount: int) -> CouponStock:
        return await self.inventory.create_coupon(name, amount)

    async def details(self, name: str) -> CouponDetails:
        stock = await self.inventory.get_coupon(name)
        if stock is None:
            raise CouponNotFound(name)
        return CouponDetails(stock, await self.claims.claimants(name))

    async def claim(self, user_id: str, coupon_name: str) -> Claimed:
        sold_out = await self._sold_out.get(coupon_name)
        if sold_out is not None:  # no saga, no write
            if await sold_out.holds(self.inventory, coupon_name, user_id):
                raise AlreadyClaimed(coupon_name)
            raise OutOfStock(coupon_name)
        await self._admission.enter()
        # Millisecond precision: what MongoDB stores is what the client is told.
        now = datetime.now(UTC)
        payload = ClaimPayload(
            user_id, coupon_name, now.replace(microsecond=now.microsecond // 1000 * 1000)
        )
        # Named here, so the answer can carry the saga's id whatever the outcome.
        saga_id = new_saga_id()
        SAGA_ID.set(saga_id)
        saga = asyncio.ensure_future(self._engine.run(self._claim_saga, payload.to_dict(), saga_id))
        saga.add_done_callback(self._admission.leave)
        # Shielded: a client that hangs up must not cut a saga (or its compensation) short.
        try:
            record = await asyncio.shield(saga)
        except OutOfStock:
            await self._sold_out.learn(coupon_name)
            raise
        return Claimed(record.saga_id, user_id, coupon_name, payload.claimed_at)
