"""`coupon-saga list` and `show`, run as the console script an operator runs."""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from devstack.servers import free_port
from tests.support.api import claim, create
from tests.support.cli import coupon_saga, coupon_saga_to_a_closed_reader
from tests.support.settings import changed

# The one timestamp format the tool prints: RFC 3339, UTC, milliseconds.
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


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
        settings, "list", "--coupon", name, "--status", "refused", "--json"
    )
    assert code == 0
    (listed,) = json.loads(out)
    assert listed["payload"]["user_id"] == "loser"
    assert listed["error"].startswith("OutOfStock")


async def test_show_of_an_unknown_saga_exits_1(settings):
    code, _, err = await coupon_saga(settings, "show", "00000000-0000-0000-0000-000000000000")
    assert code == 1
    assert "no saga" in err


@pytest.mark.parametrize(
    "verb", [["show", "{saga_id}"], ["show", "{saga_id}", "--json"], ["list", "--coupon", "{name}"]]
)
async def test_a_reader_that_stops_early_gets_no_traceback(settings, service, name, verb):
    """`coupon-saga show ID | head`: the reader goes away before the answer is written. The
    tool ends quietly with the status a shell gives a command SIGPIPE ended (128 + 13)."""
    await service.create(name, 1)
    saga_id = (await service.claim("reader", name)).saga_id

    code, err = await coupon_saga_to_a_closed_reader(
        settings, *(word.format(saga_id=saga_id, name=name) for word in verb)
    )

    assert err == ""
    assert code == 141


async def test_usage_errors_exit_2(settings):
    assert (await coupon_saga(settings, "list", "--status", "bogus"))[0] == 2
    assert (await coupon_saga(settings))[0] == 2


async def test_a_completed_saga_is_left_alone_and_cannot_be_compensated(
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
    assert "is completed" in err and "resume" not in err  # nothing is left to resume


async def test_recover_with_nothing_stuck_exits_0(settings):
    code, out, _ = await coupon_saga(settings, "recover", "--older-than", "3600", "--json")
    assert code == 0
    assert json.loads(out) == []
    code, out, _ = await coupon_saga(settings, "recover", "--older-than", "3600")
    assert (code, out) == (0, "no stuck saga\n")


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
    assert (code, shown["status"], shown["payload"]["user_id"]) == (0, "refused", "late")
    assert shown["error"].startswith("OutOfStock")


async def test_a_refusal_is_listed_apart_from_undone_sagas(http, gateway, settings, name):
    """A business "no" before any side effect is `refused`, not `compensated` (nothing was
    undone), in the log and in `list --status`."""
    await create(http, gateway, name, 0)
    refused = (await claim(http, gateway, "late", name))[1]
    assert refused["error"] == "out_of_stock"

    listed = {}
    for status in ("refused", "compensated"):
        _, out, _ = await coupon_saga(
            settings, "list", "--status", status, "--coupon", name, "--json"
        )
        listed[status] = [(row["status"], row["payload"]["user_id"]) for row in json.loads(out)]
    assert listed == {"refused": [("refused", "late")], "compensated": []}


async def claimed_saga(http, gateway, name: str, user: str) -> str:
    """A saga that ran to its end: its record and its events stream both exist."""
    async with http.post(
        f"{gateway}/api/coupons/claim", json={"user_id": user, "coupon_name": name}
    ) as response:
        assert response.status == 200
        return response.headers["X-Saga-Id"]


@pytest.mark.parametrize("verb", ["show", "resume", "compensate"])
async def test_a_saga_id_that_is_not_a_uuid_is_a_usage_error(http, gateway, settings, name, verb):
    """`<id>:events` names the saga's events stream: read as a saga it was a WRONGTYPE crash."""
    await create(http, gateway, name, 1)
    saga_id = await claimed_saga(http, gateway, name, "keyed")

    code, out, err = await coupon_saga(settings, verb, f"{saga_id}:events")
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and "saga id" in err, err


async def test_a_negative_limit_is_a_usage_error(http, gateway, settings, name):
    await create(http, gateway, name, 1)
    await claimed_saga(http, gateway, name, "only")

    code, out, err = await coupon_saga(settings, "list", "--coupon", name, "--limit", "-1")
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and "--limit" in err, err


async def test_show_gives_tries_lease_and_takeovers_as_data(http, gateway, settings, name):
    await create(http, gateway, name, 1)
    saga_id = await claimed_saga(http, gateway, name, "shown")

    code, out, _ = await coupon_saga(settings, "show", saga_id, "--json")
    shown = json.loads(out)
    assert code == 0
    # reserve, record and confirm each tried once (the record's own count is back at 0).
    assert (shown["attempts"], shown["takeovers"], shown["epoch"]) == (3, 0, 1)
    assert shown["lease"] is None  # finished: nobody drives it
    times = [shown["created_at"], shown["updated_at"], shown["payload"]["claimed_at"]]
    times += [event["at"] for event in shown["events"]]
    assert all(TIMESTAMP.match(at) for at in times), times

    code, out, _ = await coupon_saga(settings, "show", saga_id)
    fields = dict(line.split(":", 1) for line in out.split("\n\n")[0].splitlines())
    assert code == 0
    assert json.loads(fields["done"]) == ["reserve", "record", "confirm"]  # data, not a repr
    assert json.loads(fields["payload"]) == shown["payload"]
    assert (fields["attempts"].strip(), fields["lease"].strip()) == ("3", "none (not in flight)")


async def test_list_says_when_its_answer_is_cut_at_the_limit(http, gateway, settings, name):
    await create(http, gateway, name, 3)
    for user in ("first", "second", "third"):
        await claimed_saga(http, gateway, name, user)

    code, out, err = await coupon_saga(settings, "list", "--coupon", name, "--limit", "2", "--json")
    assert code == 0
    assert [s["payload"]["user_id"] for s in json.loads(out)] == ["third", "second"]
    assert "more match" in err

    code, out, err = await coupon_saga(settings, "list", "--coupon", name, "--limit", "3")
    assert (code, err) == (0, "")
    assert len(out.splitlines()) == 4  # the header and every saga


async def test_list_options_have_help_texts(settings):
    code, out, _ = await coupon_saga(settings, "list", "--help")
    out = " ".join(out.split())  # as wrapped to the terminal
    assert code == 0
    assert "in-flight: running or compensating" in out
    assert "only the sagas of this coupon" in out and "at most N sagas" in out


async def test_with_json_errors_are_json_on_stdout(settings):
    missing = str(uuid.uuid4())
    code, out, err = await coupon_saga(settings, "show", missing, "--json")
    assert (code, err) == (1, "")
    assert json.loads(out)["error"] == "not_found" and missing in json.loads(out)["message"]

    code, out, err = await coupon_saga(settings, "list", "--limit", "0", "--json")
    assert (code, err) == (2, "")
    assert json.loads(out)["error"] == "usage"


def redis_nowhere(settings):
    # No Sentinels either: they would name the master that answers.
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    return changed(settings, {"redis_url": nowhere, "redis_sentinels": ""})


async def test_a_store_that_does_not_answer_exits_3(settings):
    code, out, err = await coupon_saga(redis_nowhere(settings), "list")
    assert (code, out) == (3, "")
    assert len(err.splitlines()) == 1 and "redis is unavailable" in err, err

    code, out, err = await coupon_saga(redis_nowhere(settings), "recover", "--json")
    assert (code, err) == (3, "")
    assert json.loads(out)["error"] == "store_unavailable"


async def test_wrong_settings_exit_3_in_one_line(settings):
    no_database = urlunsplit(urlsplit(settings.database_url)._replace(path="/no_such_database"))
    wrong_database = changed(settings, {"database_url": no_database})
    code, out, err = await coupon_saga(wrong_database, "audit")
    assert (code, out) == (3, "")
    assert len(err.splitlines()) == 1 and "no_such_database" in err, err

    refused = settings.model_copy(update={"pg_pool_size": 0})  # unchecked: the tool refuses it
    code, out, err = await coupon_saga(refused, "list")
    assert (code, out) == (3, "")
    assert len(err.splitlines()) == 1 and "PG_POOL_SIZE" in err, err
