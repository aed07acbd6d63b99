"""Limits on what one client can make the gateway hold, and the optional admin token.

Each test runs its own `coupon-service` (one worker) with the limit set small.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.support.api import claim, create, metric
from tests.support.servers import gateway_process, process_group
from tests.support.settings import changed
from tests.support.waiting import eventually


def with_limits(settings, **limits):
    return changed(settings, limits)


async def raw_request(
    base: str, head: bytes, body: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + body)
    await writer.drain()
    return reader, writer


async def status_of(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    response = await asyncio.wait_for(reader.read(65536), timeout=30)
    status = int(response.split(b" ", 2)[1])
    return status, response.partition(b"\r\n\r\n")[2]


def slow_claim_head(base: str) -> bytes:
    return (
        b"POST /api/coupons/claim HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    )


async def test_a_body_that_comes_too_slowly_is_408(http, settings, tmp_path):
    limited = with_limits(settings, body_timeout_seconds=0.5)
    with gateway_process(limited, tmp_path / "gw.log", workers=1) as base:
        reader, writer = await raw_request(base, slow_claim_head(base), b'{"user_id": ')
        status, body = await status_of(reader)
        writer.close()
    assert status == 408
    assert b'"request_timeout"' in body


async def test_past_the_concurrency_cap_requests_get_503_not_a_queue(http, settings, tmp_path):
    limited = with_limits(settings, max_concurrent_requests=1)
    with gateway_process(limited, tmp_path / "gw.log", workers=1) as base:
        # One slow request takes the only slot ...
        reader, writer = await raw_request(base, slow_claim_head(base), b"{")
        refused = []

        async def ready_refused() -> bool:
            async with http.get(f"{base}/ready") as response:
                refused[:] = [response.status, response.headers, await response.json()]
            return response.status != 200

        await eventually(ready_refused)  # once the gateway has read its head
        status, headers, body = refused
        assert (status, headers["Retry-After"], body["error"]) == (503, "1", "unavailable")
        async with http.get(f"{base}/health") as response:
            assert response.status == 200  # liveness is never refused
        # ... until it is over: the rest of its body arrives, not JSON.
        writer.write(b" " * 199)
        await writer.drain()
        assert (await status_of(reader))[0] == 400
        writer.close()
        async with http.get(f"{base}/ready") as response:
            assert response.status == 200


@pytest.mark.parametrize(
    "head",
    [
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: v\r\n" % n for n in range(100))
        + b"\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["header too large", "too many headers", "request line too long"],
)
async def test_oversized_heads_are_refused_with_400(settings, tmp_path, head):
    with gateway_process(settings, tmp_path / "gw.log", workers=1) as base:
        reader, writer = await raw_request(base, head)
        status, body = await status_of(reader)
        writer.close()
    assert status == 400
    assert json.loads(body)["error"] == "invalid_request"


async def test_the_admin_token_guards_coupon_creation_only(http, settings, pg, tmp_path, name):
    guarded = with_limits(settings, admin_token=SecretStr("s3cret-token"))
    url = "/api/coupons"
    payload = {"name": name, "amount": 1}
    with gateway_process(guarded, tmp_path / "gw.log", workers=1) as base:
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}]:
            async with http.post(f"{base}{url}", json=payload, headers=headers) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert (await response.json())["error"] == "unauthorized"
        assert await pg.fetchval("SELECT count(*) FROM coupons WHERE name = $1", name) == 0

        headers = {"Authorization": "Bearer s3cret-token"}
        async with http.post(f"{base}{url}", json=payload, headers=headers) as response:
            assert response.status == 201
        assert (await claim(http, base, "anyone", name))[0] == 200  # claims need no token


def open_sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            count += str(fd.readlink()).startswith("socket:")
    return count


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_two_thousand_idle_connections_do_not_stop_a_normal_client(
    http, settings, tmp_path, name
):
    with gateway_process(settings, tmp_path / "gw.log", workers=1) as base:
        pid = process_group(base)  # with one worker, the gateway's only process
        await create(http, base, name, 1)
        before = rss_kib(pid)
        host, port = base.removeprefix("http://").split(":")
        idle = [await asyncio.open_connection(host, int(port)) for _ in range(2000)]

        async def all_accepted() -> bool:
            return open_sockets(pid) >= 2000

        await eventually(all_accepted)
        held = rss_kib(pid)

        assert (await claim(http, base, "normal", name))[0] == 200
        async with http.get(f"{base}/health") as response:
            assert response.status == 200
        for _, writer in idle:
            writer.close()
    grown_mib = (held - before) / 1024
    print(f"worker RSS {before // 1024} MiB -> {held // 1024} MiB with 2,000 idle connections")
    assert grown_mib < 64, f"{grown_mib:.1f} MiB for 2,000 idle connections"


def head_of(response: bytes) -> tuple[int, dict[str, str]]:
    """The status and headers (lower-cased names) of the first response in `response`."""
    lines = response.partition(b"\r\n\r\n")[0].decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ", 2)[1]), {k.lower(): v for k, v in headers.items()}


async def test_an_expectation_other_than_100_continue_is_417_json(settings, tmp_path):
    payload = b'{"user_id": "u", "coupon_name": "c"}'
    with gateway_process(settings, tmp_path / "gw.log", workers=1) as base:
        for path in [b"/api/coupons/claim", b"/api/coupons", b"/health", b"/no/such/path"]:
            reader, writer = await raw_request(
                base,
                b"POST %s HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: %d\r\n\r\n"
                % (path, len(payload)),
                payload,
            )
            response = await asyncio.wait_for(reader.read(65536), timeout=30)
            writer.close()
            status, headers = head_of(response)
            assert (path, status) == (path, 417)
            assert headers["content-type"] == "application/json; charset=utf-8"
            error = json.loads(response.partition(b"\r\n\r\n")[2])["error"]
            assert error == "expectation_failed"


async def test_100_continue_with_a_body_over_the_limit_is_refused_before_the_body(
    settings, tmp_path
):
    with gateway_process(settings, tmp_path / "gw.log", workers=1) as base:
        reader, writer = await raw_request(
            base,
            b"POST /api/coupons HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 10000000\r\n\r\n",
        )
        response = await asyncio.wait_for(reader.read(65536), timeout=30)
        writer.close()
    status, headers = head_of(response)
    assert status == 413  # not "100 Continue": the client need not send 10 MB to hear no
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(response.partition(b"\r\n\r\n")[2])["error"] == "payload_too_large"


async def test_100_continue_within_the_limit_continues(settings, tmp_path, name):
    with gateway_process(settings, tmp_path / "gw.log", workers=1) as base:
        payload = json.dumps({"name": name, "amount": 1}).encode()
        reader, writer = await raw_request(
            base,
            b"POST /api/coupons HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(payload),
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        writer.write(payload)
        status, _ = await status_of(reader)
        writer.close()
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    assert status == 201


async def test_a_client_hanging_up_mid_body_is_a_499_and_one_info_line(http, settings, tmp_path):
    """Nothing failed on our side: no error log, no traceback, no 500 in the metrics."""
    log_path = tmp_path / "gw.log"
    with gateway_process(changed(settings, {"log_level": "info"}), log_path, 1) as base:
        _, writer = await raw_request(base, slow_claim_head(base), b'{"user_id": ')
        writer.close()
        await writer.wait_closed()

        async def counted() -> bool:
            sample = "http_requests_total"
            return await metric(http, base, sample, route="/api/coupons/claim", status="499") == 1

        await eventually(counted)
        assert await metric(http, base, "http_requests_total", status="500") == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert [line for line in lines if line["level"] in ("warning", "error", "critical")] == []
    assert not [line for line in lines if "error" in line]  # no traceback
    hung_up = [line for line in lines if "hung up" in line["message"]]
    assert [line["level"] for line in hung_up] == ["info"]
