"""The saga log in Redis: one hash per saga, a stream of its events, and status indexes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import orjson
import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from sagas.records import Phase, SagaEvent, SagaRecord, SagaStatus
from services import redis_keys as keys
from services.failures import unavailable_on_failure

_MAX_EVENTS = 1000  # a saga that retries forever must not grow its stream without bound


class RedisSagaLog:
    def __init__(self, client: aioredis.Redis, retention_seconds: int) -> None:
        self._redis = client
        self._retention = retention_seconds

    async def save(self, record: SagaRecord, events: Sequence[SagaEvent]) -> None:
        """Write the record, append its events and update the indexes in one MULTI/EXEC."""
        saga_key, events_key = keys.saga(record.saga_id), keys.saga_events(record.saga_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(saga_key, mapping=_encode(record))
        for event in events:
            pipe.xadd(events_key, _encode_event(event), maxlen=_MAX_EVENTS, approximate=True)
        if record.status.in_flight:
            pipe.zadd(keys.IN_FLIGHT, {record.saga_id: record.updated_at})
        else:
            pipe.zrem(keys.IN_FLIGHT, record.saga_id)
        if record.status is SagaStatus.FAILED:
            # Parked for an operator: kept without expiry until someone resumes or compensates it.
            pipe.zadd(keys.FAILED, {record.saga_id: record.updated_at})
        else:
            pipe.zrem(keys.FAILED, record.saga_id)
        if record.status.finished:
            pipe.zadd(keys.FINISHED, {record.saga_id: record.updated_at})
            pipe.zremrangebyscore(keys.FINISHED, 0, record.updated_at - self._retention)
            pipe.expire(saga_key, self._retention)
            pipe.expire(events_key, self._retention)
        with unavailable_on_failure("redis"):
            await pipe.execute()

    async def load(self, saga_id: str) -> SagaRecord | None:
        with unavailable_on_failure("redis"):
            fields = cast(dict[str, str], await self._redis.hgetall(keys.saga(saga_id)))
        return _decode(saga_id, fields) if fields else None

    async def history(self, saga_id: str) -> list[SagaEvent]:
        with unavailable_on_failure("redis"):
            entries = cast(
                list[tuple[str, dict[str, str]]],
                await self._redis.xrange(keys.saga_events(saga_id)),
            )
        return [_decode_event(fields) for _, fields in entries]

    async def find(self, status: SagaStatus | None, limit: int) -> list[SagaRecord]:
        """Newest first. In-flight sagas come from their index, the others from theirs."""
        if status is None:
            indexes = [keys.IN_FLIGHT, keys.FAILED, keys.FINISHED]
        elif status.in_flight:
            indexes = [keys.IN_FLIGHT]
        elif status is SagaStatus.FAILED:
            indexes = [keys.FAILED]
        else:
            indexes = [keys.FINISHED]
        with unavailable_on_failure("redis"):
            ids: list[tuple[str, float]] = []
            for index in indexes:
                ids += cast(
                    list[tuple[str, float]],
                    await self._redis.zrevrange(index, 0, -1, withscores=True),
                )
            ids.sort(key=lambda pair: pair[1], reverse=True)
            pipe = self._redis.pipeline(transaction=False)
            for saga_id, _ in ids:
                pipe.hgetall(keys.saga(saga_id))
            rows = await pipe.execute() if ids else []
        records = [
            _decode(saga_id, fields)
            for (saga_id, _), fields in zip(ids, rows, strict=True)
            if fields
        ]
        if status is not None:
            records = [record for record in records if record.status is status]
        return records[:limit]


def _encode(record: SagaRecord) -> dict[FieldT, EncodableT]:
    return {
        "name": record.name,
        "payload": orjson.dumps(record.payload),
        "status": record.status.value,
        "step": record.step,
        "created_at": repr(record.created_at),
        "updated_at": repr(record.updated_at),
        "attempts": record.attempts,
        "error": record.error,
        "done": ",".join(record.done),
    }


def _decode(saga_id: str, fields: dict[str, str]) -> SagaRecord:
    return SagaRecord(
        saga_id=saga_id,
        name=fields["name"],
        payload=orjson.loads(fields["payload"]),
        status=SagaStatus(fields["status"]),
        step=fields["step"],
        created_at=float(fields["created_at"]),
        updated_at=float(fields["updated_at"]),
        attempts=int(fields.get("attempts", 0)),
        error=fields.get("error", ""),
        done=tuple(filter(None, fields.get("done", "").split(","))),
    )


def _encode_event(event: SagaEvent) -> dict[FieldT, EncodableT]:
    return {
        "at": repr(event.at),
        "step": event.step,
        "phase": event.phase.value,
        "error": event.error,
    }


def _decode_event(fields: dict[str, str]) -> SagaEvent:
    return SagaEvent(
        float(fields["at"]), fields["step"], Phase(fields["phase"]), fields.get("error", "")
    )
