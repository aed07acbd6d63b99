"""`coupon-saga list` and `show`, run as the console script an operator runs."""

from __future__ import annotations

import json

from tests.support.api import claim, create
from tests.support.cli import coupon_saga


async def test_list_and_show_a_completed_claim(http, gateway, settings, name):
    await create(http, gateway, name, 1)
    async with http.post(
        f"{gateway}/api/coupons/claim", json={"user_id": "operator_test", "coupon_name": name}
    ) as response:
        saga_id = response.headers["X-Saga-Id"]

    code, out, _ = await coupon_saga(settings, "list", "--coupon", name, "--json")
    assert code == 0
    (listed,) = json.loads(out)
    assert (listed["saga_id"], listed["status"]) == (saga_id, "completed")
    assert listed["payload"]["user_id"] == "operator_test"

    code, out, _ = await coupon_saga(settings, "show", saga_id, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["done"] == ["reserve", "record", "confirm"]
    assert [(e["step"], e["phase"]) for e in shown["events"]][-2:] == [
        ("confirm", "succeeded"),
        ("confirm", "finished"),
    ]

    code, out, _ = await coupon_saga(settings, "show", saga_id)
    assert code == 0
    assert "completed" in out and "record" in out


async def test_list_filters_by_status(http, gateway, settings, name):
    await create(http, gateway, name, 1)
    await claim(http, gateway, "winner", name)
    await claim(http, gateway, "loser", name)

    code, out, _ = await coupon_saga(
        settings, "list", "--coupon", name, "--status", "compensated", "--json"
    )
    assert code == 0
    (listed,) = json.loads(out)
    assert listed["payload"]["user_id"] == "loser"
    assert listed["error"].startswith("OutOfStock")


async def test_show_of_an_unknown_saga_exits_1(settings):
    code, _, err = await coupon_saga(settings, "show", "00000000-0000-0000-0000-000000000000")
    assert code == 1
    assert "no saga" in err


async def test_usage_errors_exit_2(settings):
    assert (await coupon_saga(settings, "list", "--status", "bogus"))[0] == 2
    assert (await coupon_saga(settings))[0] == 2


async def test_a_finished_saga_is_left_alone_and_not_compensated_past_its_pivot(
    http, gateway, settings, name
):
    await create(http, gateway, name, 1)
    async with http.post(
        f"{gateway}/api/coupons/claim", json={"user_id": "done", "coupon_name": name}
    ) as response:
        saga_id = response.headers["X-Saga-Id"]

    code, out, _ = await coupon_saga(settings, "resume", saga_id, "--json")
    assert code == 0
    assert json.loads(out) == {"saga_id": saga_id, "status": "completed", "did": "nothing"}

    code, _, err = await coupon_saga(settings, "compensate", saga_id)
    assert code == 1
    assert "past its pivot" in err


async def test_recover_with_nothing_stuck_exits_0(settings):
    code, out, _ = await coupon_saga(settings, "recover", "--older-than", "3600", "--json")
    assert code == 0
    assert json.loads(out) == []


async def test_a_refused_claim_names_its_saga_for_the_replay_tool(http, gateway, settings, name):
    await create(http, gateway, name, 0)
    async with http.post(
        f"{gateway}/api/coupons/claim", json={"user_id": "late", "coupon_name": name}
    ) as response:
        assert response.status == 409
        saga_id = response.headers["X-Saga-Id"]
    async with http.get(f"{gateway}/api/coupons/{name}") as response:
        assert "X-Saga-Id" not in response.headers  # not carried over on a kept-alive connection

    code, out, _ = await coupon_saga(settings, "show", saga_id, "--json")
    shown = json.loads(out)
    assert (code, shown["status"], shown["payload"]["user_id"]) == (0, "compensated", "late")
    assert shown["error"].startswith("OutOfStock")
