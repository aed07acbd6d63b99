"""Small helpers for talking to the gateway over HTTP in tests."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def create(http: aiohttp.ClientSession, base: str, name: str, amount: int) -> None:
    async with http.post(f"{base}/api/coupons", json={"name": name, "amount": amount}) as response:
        assert response.status == 201, await response.text()


async def claim(
    http: aiohttp.ClientSession, base: str, user_id: str, coupon_name: str
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{base}/api/coupons/claim", json={"user_id": user_id, "coupon_name": coupon_name}
    ) as response:
        return response.status, await response.json()


async def claim_all(
    http: aiohttp.ClientSession, base: str, attempts: list[tuple[str, str]]
) -> list[tuple[int, dict[str, Any]]]:
    """Fire every (user_id, coupon_name) claim at once."""
    start = asyncio.Event()

    async def one(user_id: str, coupon_name: str) -> tuple[int, dict[str, Any]]:
        await start.wait()
        return await claim(http, base, user_id, coupon_name)

    tasks = [asyncio.ensure_future(one(u, c)) for u, c in attempts]
    await asyncio.sleep(0)
    start.set()
    return await asyncio.gather(*tasks)


def outcomes(results: list[tuple[int, dict[str, Any]]]) -> Counter[str]:
    """Counts by outcome: 'claimed' for 200, else the error code."""
    return Counter("claimed" if status == 200 else body["error"] for status, body in results)


async def details(http: aiohttp.ClientSession, base: str, name: str) -> dict[str, Any]:
    async with http.get(f"{base}/api/coupons/{name}") as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def metric(http: aiohttp.ClientSession, base: str, sample: str, **labels: str) -> float:
    """The value of one sample on /metrics (summed over workers by the gateway), 0 if absent."""
    async with http.get(f"{base}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return 0.0


async def claim_all_tolerant(
    http: aiohttp.ClientSession, base: str, attempts: list[tuple[str, str]]
) -> list[tuple[int, dict[str, Any]]]:
    """Fire every claim at once; a claim cut off (its gateway died) counts as (0, {})."""

    async def one(user_id: str, coupon_name: str) -> tuple[int, dict[str, Any]]:
        try:
            return await claim(http, base, user_id, coupon_name)
        except aiohttp.ClientError:
            return 0, {}

    return await asyncio.gather(*(one(u, c) for u, c in attempts))
