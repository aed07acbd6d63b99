"""When the record step fails, the hold is released and the saga ends compensated.

Outages are made with a proxy between the app and a real store; the stores themselves run.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sagas.records import SagaStatus
from tests.support.api import claim, create, details, metric
from tests.support.invariants import assert_invariants, read_facts
from tests.support.proxy import CuttableProxy, through
from tests.support.servers import app_in_process
from tests.support.waiting import eventually


async def saga_of(pg, components, coupon: str, user: str):
    saga_id = await pg.fetchval(
        "SELECT saga_id::text FROM holds WHERE coupon_name = $1 AND user_id = $2", coupon, user
    )
    assert saga_id is not None, "the reserve step never ran"
    return await components.saga_log.load(saga_id), await pg.fetchval(
        "SELECT status FROM holds WHERE saga_id = $1::uuid", saga_id
    )


async def cut_and_notice(proxy: CuttableProxy, http, base: str, name: str) -> None:
    """Cut the store and let the driver notice, through a read that changes nothing.

    The first call after a drop may have reached the store before the connection died;
    from then on the driver fails before any connection is made, which is what a client
    meets during an outage.
    """
    await proxy.cut()
    async with http.get(f"{base}/api/coupons/{name}") as response:
        assert response.status == 503


async def test_mongodb_down_at_record_releases_the_hold(
    http, settings, service, pg, mongo, mongo_proxy, name, components
):
    async with app_in_process(through(settings, mongo_url=mongo_proxy)) as base:
        await create(http, base, name, 3)
        await cut_and_notice(mongo_proxy, http, base, name)

        status, body = await claim(http, base, "unlucky", name)

        assert (status, body["error"]) == (503, "unavailable")
    record, hold_status = await saga_of(pg, components, name, "unlucky")
    assert record.status is SagaStatus.COMPENSATED, record.error
    assert "mongodb" in record.error
    assert hold_status == "released"
    assert (await pg.fetchval("SELECT remaining_amount FROM coupons WHERE name = $1", name)) == 3
    await assert_invariants(pg, mongo, name)


async def test_mongodb_dropping_under_a_claim_never_loses_a_unit(
    http, settings, service, pg, mongo, mongo_proxy, name, components
):
    """The first claim after a drop cannot know whether its insert landed.

    Either it proved the claim absent and gave the unit back, or it kept the unit held
    and left the saga compensating for recovery. Never a unit lost or a claim without stock.
    """
    async with app_in_process(through(settings, mongo_url=mongo_proxy)) as base:
        await create(http, base, name, 3)
        retries = await metric(http, base, "saga_step_retries_total", step="record")
        await mongo_proxy.cut()

        status, body = await claim(http, base, "in_flight", name)

        assert (status, body["error"]) == (503, "unavailable")
        counted = await metric(http, base, "saga_step_retries_total", step="record") - retries
    record, hold_status = await saga_of(pg, components, name, "in_flight")
    # The counters are this test process's, shared by every app in it: other traffic can
    # only add to them, so this saga's own retries are a floor.
    history = await components.saga_log.history(record.saga_id)
    own_retries = sum(1 for e in history if (e.step, e.phase.value) == ("record", "retrying"))
    assert counted >= own_retries >= 1, history
    assert (record.status, hold_status) in {
        (SagaStatus.COMPENSATED, "released"),
        (SagaStatus.COMPENSATING, "held"),
    }, record.error
    facts = await read_facts(pg, mongo, name)
    assert facts.claims == {}
    assert facts.remaining_amount + len(facts.live_holds) == facts.amount


async def test_conflicting_claim_document_releases_the_hold(
    http, gateway, service, pg, mongo, name, components
):
    await create(http, gateway, name, 2)
    # A claim for this user that the inventory knows nothing about, as if left by an old bug.
    await mongo.claims.insert_one(
        {
            "user_id": "planted",
            "coupon_name": name,
            "saga_id": "planted-saga",
            "claimed_at": datetime.now(UTC),
        }
    )

    status, body = await claim(http, gateway, "planted", name)

    assert (status, body["error"]) == (409, "already_claimed")
    record, hold_status = await saga_of(pg, components, name, "planted")
    assert record.status is SagaStatus.COMPENSATED
    assert "AlreadyClaimed" in record.error
    assert record.done == ()
    assert hold_status == "released"
    coupon = await details(http, gateway, name)
    assert (coupon["remaining_amount"], coupon["claimed_by"]) == (2, ["planted"])
    # The planted document is the only claim: conservation holds over the released hold.
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM holds WHERE coupon_name = $1 AND status <> 'released'", name
        )
        == 0
    )


async def test_redis_down_refuses_before_touching_stock(http, settings, pg, redis_proxy, name):
    async with app_in_process(through(settings, redis_url=redis_proxy)) as base:
        await create(http, base, name, 3)
        await redis_proxy.cut()

        status, body = await claim(http, base, "early", name)

        assert (status, body["error"]) == (503, "unavailable")
    assert await pg.fetchval("SELECT count(*) FROM holds WHERE coupon_name = $1", name) == 0
    assert await pg.fetchval("SELECT remaining_amount FROM coupons WHERE name = $1", name) == 3


async def test_service_recovers_when_the_store_comes_back(
    http, settings, pg, mongo, mongo_proxy, name
):
    async with app_in_process(through(settings, mongo_url=mongo_proxy)) as base:
        await create(http, base, name, 2)
        await cut_and_notice(mongo_proxy, http, base, name)
        assert (await claim(http, base, "first", name))[0] == 503
        await mongo_proxy.restore()

        async def claimed() -> bool:  # claims are let in once a probe finds MongoDB back
            status, body = await claim(http, base, "first", name)
            assert status == 200 or (status, body.get("outcome")) == (503, None)
            return status == 200

        await eventually(claimed)
    await assert_invariants(pg, mongo, name)


async def test_postgresql_down_is_503_for_every_route(http, settings, pg, pg_proxy, name):
    async with app_in_process(through(settings, database_url=pg_proxy)) as base:
        await create(http, base, name, 1)
        await pg_proxy.cut()
        requests = [
            http.post(f"{base}/api/coupons", json={"name": name + "_new", "amount": 1}),
            http.post(f"{base}/api/coupons/claim", json={"user_id": "u", "coupon_name": name}),
            http.get(f"{base}/api/coupons/{name}"),
        ]
        for request in requests:
            async with request as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "1"
                assert (await response.json())["error"] == "unavailable"
    assert await pg.fetchval("SELECT count(*) FROM coupons WHERE name = $1", name + "_new") == 0
    assert await pg.fetchval("SELECT remaining_amount FROM coupons WHERE name = $1", name) == 1
