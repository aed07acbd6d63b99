"""Typed keys for everything the app keeps in its state."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from pymongo import AsyncMongoClient

from orchestrator.coupons import CouponService
from orchestrator.recovery import Recoverer
from orchestrator.settings import Settings
from orchestrator.store_watch import StoreStates
from sagas.audit import Auditor

SETTINGS = web.AppKey("settings", Settings)
PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)
MONGO_CLIENT = web.AppKey("mongo_client", AsyncMongoClient)
REDIS = web.AppKey("redis", aioredis.Redis)
COUPONS = web.AppKey("coupons", CouponService)
RECOVERER = web.AppKey("recoverer", Recoverer)
AUDITOR = web.AppKey("auditor", Auditor)
STORE_STATES = web.AppKey("store_states", StoreStates)
