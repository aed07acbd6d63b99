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


def test_a_reconciliation_after_a_failover_is_one_line_with_its_numbers(caplog) -> None:
    from orchestrator.reconciler import _say
    from sagas.lineage import Reconciled
    from sagas.ports import Lineage

    _say(Reconciled(Lineage(7, 1), Lineage(7, 2), 3, 0, 1), 0.25)
    assert caplog.messages == [
        "PostgreSQL is on timeline 2 (was 1): stock reconciled in 0.25s; 3 claims' holds "
        "and 1 in-flight sagas' holds the failover lost were restored"
    ]
