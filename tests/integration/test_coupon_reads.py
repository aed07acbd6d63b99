"""A coupon's read over two stores: stock and claimants never add up to more than the amount."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from orchestrator.claims.coupons import read_details
from services.claims import MongoClaims


class CompensatedBetweenReads:
    """The real claim ledger; right after its first read, a compensation of one saga runs
    on the real stores (the claim document erased, then its unit given back)."""

    def __init__(self, claims: MongoClaims, compensate) -> None:
        self._claims = claims
        self._compensate = compensate
        self.reads = 0

    async def claimants(self, coupon_name: str) -> dict[str, str]:
        read = await self._claims.claimants(coupon_name)
        self.reads += 1
        if self.reads == 1:
            await self._compensate()
        return read


async def test_a_unit_given_back_between_the_reads_does_not_count_twice(service, name, components):
    await components.inventory.create_coupon(name, 2)
    await service.claim("bob", name)
    # Alice's saga reserved and wrote its document; whether the write landed was not known,
    # so it compensates: the document erased, then the unit given back.
    alice = str(uuid.uuid4())
    await components.inventory.reserve(alice, name, "alice")
    await components.claims.record(alice, "alice", name, datetime.now(UTC))

    async def compensate_alice() -> None:
        assert await components.claims.erase(alice)
        assert await components.inventory.release(alice, name, "alice")

    ledger = CompensatedBetweenReads(components.claims, compensate_alice)
    details = await read_details(components.inventory, ledger, name)

    assert (details.stock.remaining_amount, details.claimed_by) == (1, ["bob"])
    assert ledger.reads == 2


async def test_a_quiet_coupon_is_read_once_from_each_store(service, name, components):
    await components.inventory.create_coupon(name, 3)
    await service.claim("alice", name)

    ledger = CompensatedBetweenReads(components.claims, _nothing)
    details = await read_details(components.inventory, ledger, name)

    assert (details.stock.remaining_amount, details.claimed_by) == (2, ["alice"])
    assert ledger.reads == 1


async def _nothing() -> None:
    pass
