"""Typed keys for everything the app keeps in its state.

The service classes are named for the type checker only, so this module imports none of
them: any module may read the app's state without pulling in the service behind it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import asyncpg
    import jinja2
    import redis.asyncio as aioredis

    from orchestrator.claims.coupons import CouponService
    from orchestrator.console.reads import Console
    from orchestrator.saga.recovery import Recoverer
    from orchestrator.settings import Settings
    from orchestrator.store_watch import StoreStates
    from sagas.audit import Auditor
    from services.mongo_client import CurrentMongoClient

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
PG_POOL: web.AppKey[asyncpg.Pool] = web.AppKey("pg_pool")
MONGO_CLIENT: web.AppKey[CurrentMongoClient] = web.AppKey("mongo_client")
REDIS: web.AppKey[aioredis.Redis] = web.AppKey("redis")
COUPONS: web.AppKey[CouponService] = web.AppKey("coupons")
RECOVERER: web.AppKey[Recoverer] = web.AppKey("recoverer")
AUDITOR: web.AppKey[Auditor] = web.AppKey("auditor")
STORE_STATES: web.AppKey[StoreStates] = web.AppKey("store_states")
CONSOLE: web.AppKey[Console] = web.AppKey("console")
CONSOLE_TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("console_templates")
