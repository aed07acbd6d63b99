"""The reconciliation's watch outlives any failure of a run."""

from __future__ import annotations

import asyncio

from orchestrator.reconciler import Reconciler


async def test_the_watch_goes_on_after_a_run_fails_with_any_error() -> None:
    runs: list[int] = []

    async def refused() -> None:
        runs.append(1)
        raise RuntimeError('database "coupons" is not currently accepting connections')

    reconciler = Reconciler()
    reconciler.bind(refused)
    watching = asyncio.ensure_future(reconciler.watch(0))
    while len(runs) < 3:
        assert not watching.done(), watching
        await asyncio.sleep(0)
    watching.cancel()
    await asyncio.gather(watching, return_exceptions=True)


async def test_a_store_not_set_up_still_stops_the_start() -> None:
    from sagas.errors import StoreNotSetUp

    async def no_rights() -> None:
        raise StoreNotSetUp("postgresql", "grant the role its rights on inventory_lineage")

    reconciler = Reconciler()
    reconciler.bind(no_rights)
    try:
        await reconciler.run_now()
    except StoreNotSetUp:
        return
    raise AssertionError("run_now swallowed StoreNotSetUp")
