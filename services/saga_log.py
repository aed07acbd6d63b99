"""The saga log in Redis: one hash per saga, a stream of its events, and status indexes.

Writes are Lua scripts, so each is atomic and one round trip. Every write of a running
saga is fenced: it carries the saga's epoch and is refused once another driver has taken
the saga over (which raises the epoch). The in-flight index is scored by lease expiry on
Redis's own clock, so hosts whose clocks disagree still agree on which sagas are stuck.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
import redis.exceptions
from redis.commands.core import AsyncScript
from redis.typing import EncodableT

from sagas.errors import LeaseLost
from sagas.ports import Where
from sagas.records import Lease, Phase, SagaEvent, SagaRecord, SagaStatus
from services.failures import classified, unavailable_on_failure
from services.redis_keys import RedisKeys
from services.replica_wait import ReplicaWait

# KEYS: saga, events, in-flight, failed, finished, refused
# ARGV: saga id, mode (create|save), epoch, lease seconds, retention seconds, index
#       (in_flight|failed|finished|refused), updated_at, fields (JSON [k, v, ...]),
#       events (JSON [[...]]), the write's sequence number
# A write the saga already has (this one, landed before: a round trip that timed out
# and was sent again), or a later one of the same driver, is answered done and changes
# nothing: its events are not appended twice, nor an older record written over a newer.
_SAVE = """
local stored = redis.call('HGET', KEYS[1], 'epoch')
if stored == ARGV[3] then
    local wrote = redis.call('HMGET', KEYS[1], 'write_epoch', 'write_sequence')
    if wrote[1] == ARGV[3] and wrote[2] and tonumber(wrote[2]) >= tonumber(ARGV[10]) then
        return 1
    end
end
if ARGV[2] == 'create' then
    if stored then return 0 end
elseif stored ~= ARGV[3] then
    return 0
end
redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[8])))
redis.call('HSET', KEYS[1], 'write_epoch', ARGV[3], 'write_sequence', ARGV[10])
-- Capped, so a saga that keeps retrying cannot grow its history without bound.
for _, event in ipairs(cjson.decode(ARGV[9])) do
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', 200, '*', unpack(event))
end
local now = redis.call('TIME')
local clock = tonumber(now[1]) + tonumber(now[2]) / 1000000
if ARGV[6] == 'in_flight' then
    redis.call('ZADD', KEYS[3], clock + tonumber(ARGV[4]), ARGV[1])
else
    redis.call('ZREM', KEYS[3], ARGV[1])
end
if ARGV[6] == 'failed' then
    redis.call('ZADD', KEYS[4], ARGV[7], ARGV[1])
else
    redis.call('ZREM', KEYS[4], ARGV[1])
end
if ARGV[6] == 'finished' then
    redis.call('ZADD', KEYS[5], ARGV[7], ARGV[1])
    redis.call('ZREMRANGEBYSCORE', KEYS[5], 0, tonumber(ARGV[7]) - tonumber(ARGV[5]))
    redis.call('EXPIRE', KEYS[1], ARGV[5])
    redis.call('EXPIRE', KEYS[2], ARGV[5])
end
if ARGV[6] == 'refused' then
    -- It changed nothing: its history goes; its record stays briefly, in its own index.
    redis.call('DEL', KEYS[2])
    redis.call('EXPIRE', KEYS[1], ARGV[5])
    redis.call('ZADD', KEYS[6], ARGV[7], ARGV[1])
    redis.call('ZREMRANGEBYSCORE', KEYS[6], 0, tonumber(ARGV[7]) - tonumber(ARGV[5]))
end
return 1
"""

# KEYS: saga, in-flight, failed
# ARGV: saga id, owner, lease seconds, take parked ('1' or '0')
# Returns the new epoch, or 0 when the saga is not there to take.
_ACQUIRE = """
local now = redis.call('TIME')
local clock = tonumber(now[1]) + tonumber(now[2]) / 1000000
local lease_end = redis.call('ZSCORE', KEYS[2], ARGV[1])
local takeable = lease_end and tonumber(lease_end) <= clock
if not takeable and ARGV[4] == '1' then
    takeable = redis.call('ZSCORE', KEYS[3], ARGV[1]) ~= false
end
if not takeable or redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
redis.call('HINCRBY', KEYS[1], 'recoveries', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
redis.call('ZADD', KEYS[2], clock + tonumber(ARGV[3]), ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'epoch', 1)
"""

# KEYS: in-flight. ARGV: limit. Sagas whose lease has run out, oldest first.
_STUCK = """
local now = redis.call('TIME')
local clock = tonumber(now[1]) + tonumber(now[2]) / 1000000
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', clock, 'LIMIT', 0, ARGV[1])
"""

SCRIPTS = (_SAVE, _ACQUIRE, _STUCK)


class RedisSagaLog:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        lease_seconds: float,
        retention_seconds: int,
        owner: str = "",
        refused_retention_seconds: int = 60,
        keys: RedisKeys = RedisKeys(),  # noqa: B008 - immutable
        replica_wait: ReplicaWait = ReplicaWait(),  # noqa: B008 - immutable
    ) -> None:
        """`owner`: this process (host:pid), named as the driver of the sagas it creates.
        `replica_wait`: each round trip of fenced writes ends with a WAIT for replicas."""
        self._redis = client
        self._wait = replica_wait
        self._owner = owner
        self._keys = keys
        self._lease = lease_seconds
        self._retention = retention_seconds
        self._refused_retention = refused_retention_seconds
        self._save = client.register_script(_SAVE)
        self._acquire = client.register_script(_ACQUIRE)
        self._stuck = client.register_script(_STUCK)

    async def warm_up(self, connections: int) -> None:
        """Open that many connections and load the scripts, before the first saga needs
        them (a script's first call otherwise fails over from EVALSHA to EVAL)."""
        with unavailable_on_failure("redis"):
            await asyncio.gather(*(self._redis.ping() for _ in range(connections)))
            for script in SCRIPTS:
                await self._redis.script_load(script)

    async def create(self, record: SagaRecord, events: Sequence[SagaEvent]) -> None:
        await self._apply(
            LogWrite(
                "create",
                record,
                tuple(events),
                _index(record),
                self._retention,
                ("owner", self._owner),
                lost=f"saga {record.saga_id} exists already",
            )
        )

    async def save(
        self,
        record: SagaRecord,
        events: Sequence[SagaEvent],
        *,
        lease_seconds: float | None = None,
    ) -> None:
        write = LogWrite("save", record, tuple(events), _index(record), self._retention)
        await self._apply(write if lease_seconds is None else replace(write, lease=lease_seconds))

    async def refused(self, record: SagaRecord) -> None:
        await self._apply(LogWrite("save", record, (), "refused", self._refused_retention))

    async def _apply(self, write: LogWrite) -> None:
        """One fenced write (a batching log sends it with others), in a pipeline of its
        own: a WAIT for replicas then goes in the same round trip."""
        (outcome,) = await self.apply_many([write])
        if outcome is not None:
            raise outcome

    async def apply_many(self, writes: Sequence[LogWrite]) -> list[Exception | None]:
        """Each write's own script, all in one pipeline. None for a write done, else the
        error `_apply` would have raised for it. A failure of the round trip raises, for
        all."""
        calls = [
            _ScriptCall(self._save, _saga_keys(self._keys, write.record.saga_id), self._args(write))
            for write in writes
        ]
        answers = await self._fenced(calls)
        return [
            _write_outcome(write, answer) for write, answer in zip(writes, answers, strict=True)
        ]

    async def _fenced(self, calls: Sequence[_ScriptCall]) -> list[object]:
        """Each call's answer (or error), from one pipeline: not a transaction, since each
        script is atomic and fenced by its own epoch; then the WAIT, if replicas are to
        have the writes. Calls the server had no script for are sent again, once, after
        loading it (a restart, or a replica promoted, empties the script cache)."""
        answers = await self._pipelined(calls)
        lost_scripts = [at for at, answer in enumerate(answers) if _no_script(answer)]
        if lost_scripts:
            with unavailable_on_failure("redis"):
                for script in {calls[at].script.script for at in lost_scripts}:
                    await self._redis.script_load(script)
            again = await self._pipelined([calls[at] for at in lost_scripts])
            for at, answer in zip(lost_scripts, again, strict=True):
                answers[at] = answer
        return answers

    async def _pipelined(self, calls: Sequence[_ScriptCall]) -> list[object]:
        # EVALSHA by hand: a pipeline of Script calls first asks SCRIPT EXISTS, one
        # more round trip per batch.
        pipe = self._redis.pipeline(transaction=False)
        for call in calls:
            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        self._wait.after_writes(pipe)
        with unavailable_on_failure("redis"):
            return self._wait.settle(await pipe.execute(raise_on_error=False))

    def _args(self, write: LogWrite) -> list[EncodableT]:
        record = write.record
        return [
            record.saga_id,
            write.mode,
            record.epoch,
            self._lease if write.lease is None else write.lease,
            write.retention_seconds,
            write.index,
            repr(record.updated_at),
            orjson.dumps([*_encode(record, created=write.mode == "create"), *write.more_fields]),
            orjson.dumps([_encode_event(event) for event in write.events]),
            write.sequence,
        ]

    async def acquire(self, saga_id: str, owner: str, *, parked: bool) -> SagaRecord | None:
        keys = [self._keys.saga(saga_id), self._keys.in_flight, self._keys.failed]
        args: list[EncodableT] = [saga_id, owner, self._lease, "1" if parked else "0"]
        (epoch,) = await self._fenced([_ScriptCall(self._acquire, keys, args)])
        if isinstance(epoch, Exception):
            raise classified("redis", epoch)
        return await self.load(saga_id) if epoch else None

    async def lease(self, saga_id: str) -> Lease | None:
        with unavailable_on_failure("redis"):
            pipe = self._redis.pipeline(transaction=True)  # one instant: the lease and the clock
            pipe.zscore(self._keys.in_flight, saga_id)
            pipe.hget(self._keys.saga(saga_id), "owner")
            pipe.time()
            expires_at, owner, (seconds, micros) = await pipe.execute()
        if expires_at is None:
            return None
        # Live while its end is ahead of Redis's clock: the same test `acquire` makes.
        return Lease(
            owner or "", float(expires_at), live=float(expires_at) > seconds + micros / 1e6
        )

    async def stuck(self, limit: int | None) -> list[str]:
        count = -1 if limit is None else limit  # LIMIT 0 -1: all of them
        with unavailable_on_failure("redis"):
            return cast(list[str], await self._stuck(keys=[self._keys.in_flight], args=[count]))

    async def load(self, saga_id: str) -> SagaRecord | None:
        with unavailable_on_failure("redis"):
            fields = cast(dict[str, str], await self._redis.hgetall(self._keys.saga(saga_id)))
        return _decode(saga_id, fields) if fields else None

    async def history(self, saga_id: str) -> list[SagaEvent]:
        with unavailable_on_failure("redis"):
            entries = cast(
                list[tuple[str, dict[str, str]]],
                await self._redis.xrange(self._keys.saga_events(saga_id)),
            )
        return [_decode_event(fields) for _, fields in entries]

    async def statuses(self, saga_ids: Sequence[str]) -> dict[str, SagaStatus]:
        found: dict[str, SagaStatus] = {}
        with unavailable_on_failure("redis"):
            for start in range(0, len(saga_ids), 1000):
                chunk = saga_ids[start : start + 1000]
                pipe = self._redis.pipeline(transaction=False)
                for saga_id in chunk:
                    pipe.hget(self._keys.saga(saga_id), "status")
                values = cast(list[str | None], await pipe.execute())
                found |= {s: SagaStatus(v) for s, v in zip(chunk, values, strict=True) if v}
        return found

    async def find(
        self, status: SagaStatus | None, limit: int | None, *, where: Where | None = None
    ) -> list[SagaRecord]:
        """Each index that can hold such sagas is read newest first, `limit` ids of each,
        in one snapshot (MULTI: a saga moving from one index to another meanwhile is listed once);
        an index is read further down only while sagas of it were skipped (another status,
        `where` false, or their record expired). The records are merged by last update.
        """

        def wanted(record: SagaRecord) -> bool:
            return (status is None or record.status is status) and (where is None or where(record))

        indexes = self._indexes_holding(status)
        found: dict[str, SagaRecord] = {}
        with unavailable_on_failure("redis"):
            snapshot = self._redis.pipeline(transaction=True)
            for index in indexes:
                snapshot.zrange(**_newest_first(index, _Cursor(), limit))
            for index, page in zip(indexes, await snapshot.execute(), strict=True):
                await self._keep(index, page, limit, wanted, found)
        newest = sorted(found.values(), key=lambda record: record.updated_at, reverse=True)
        return newest[:limit]

    def _indexes_holding(self, status: SagaStatus | None) -> list[str]:
        if status is None:
            return [
                self._keys.in_flight,
                self._keys.failed,
                self._keys.finished,
                self._keys.refused,
            ]
        if status.in_flight:
            return [self._keys.in_flight]
        if status is SagaStatus.FAILED:
            return [self._keys.failed]
        if status is SagaStatus.REFUSED:
            return [self._keys.refused]
        if status is SagaStatus.COMPENSATED:  # kept briefly too if it never took effect
            return [self._keys.finished, self._keys.refused]
        return [self._keys.finished]

    async def _keep(
        self,
        index: str,
        page: list[tuple[str, float]],
        limit: int | None,
        wanted: Callable[[SagaRecord], bool],
        found: dict[str, SagaRecord],
    ) -> None:
        """Keep the wanted sagas of `page` in `found`; while fewer than `limit` of this index
        were kept and it has more, read on (twice as many each time: few round trips). Those
        reads are outside the first snapshot: a saga moving meanwhile is kept once, or missed."""
        cursor, asked, kept = _Cursor(), limit, 0
        while page:
            for record in await self._records([saga_id for saga_id, _ in page]):
                if wanted(record) and record.saga_id not in found:
                    found[record.saga_id] = record
                    kept += 1
            if asked is None or limit is None or kept >= limit or len(page) < asked:
                return
            cursor, asked = cursor.past(page), asked * 2
            page = cast(
                list[tuple[str, float]],
                await self._redis.zrange(**_newest_first(index, cursor, asked)),
            )

    async def _records(self, saga_ids: list[str]) -> list[SagaRecord]:
        """The records of these sagas, in that order; those expired meanwhile left out."""
        pipe = self._redis.pipeline(transaction=False)
        for saga_id in saga_ids:
            pipe.hgetall(self._keys.saga(saga_id))
        rows = await pipe.execute()
        return [
            _decode(saga_id, fields)
            for saga_id, fields in zip(saga_ids, rows, strict=True)
            if fields
        ]


@dataclass(frozen=True)
class _Cursor:
    """How far down an index was read: to its entries scored `score`, of which the first
    `seen` (newest first) were read too. Scores repeat: sagas can be updated at one instant."""

    score: float = math.inf
    seen: int = 0

    def past(self, page: list[tuple[str, float]]) -> _Cursor:
        last = page[-1][1]
        at_last = sum(1 for _, score in page if score == last)
        return _Cursor(last, at_last + (self.seen if last == self.score else 0))


def _newest_first(index: str, cursor: _Cursor, count: int | None) -> dict[str, Any]:
    """ZRANGE's arguments: `count` ids (None: all) of the index from `cursor` down, with
    their scores; highest score first, which is newest first (RedisKeys says how each index
    is scored)."""
    top = "+inf" if cursor.score == math.inf else repr(cursor.score)
    window = {} if count is None else {"offset": cursor.seen, "num": count}
    return {
        "name": index,
        "start": top,
        "end": "-inf",
        "desc": True,
        "byscore": True,
        "withscores": True,
        **window,
    }


@dataclass(frozen=True)
class _ScriptCall:
    script: AsyncScript
    keys: list[str]
    args: list[EncodableT]


_WRITES = itertools.count(1)


@dataclass(frozen=True)
class LogWrite:
    """One fenced write of a saga's record and new events (the _SAVE script's call)."""

    mode: str  # create | save
    record: SagaRecord
    events: tuple[SagaEvent, ...]
    index: str  # in_flight | failed | finished | refused
    retention_seconds: int
    more_fields: tuple[str, ...] = ()
    lost: str = ""  # LeaseLost's message when the fence refuses it
    lease: float | None = None  # seconds; None: the log's own
    # Rises with every write this process makes, so a saga's writes under one epoch (one
    # driver, one process) are ordered: Redis keeps the highest it applied and takes a
    # write again, or an older one, as done already.
    sequence: int = field(default_factory=lambda: next(_WRITES))

    def __post_init__(self) -> None:
        if not self.lost:
            lost = f"saga {self.record.saga_id} is driven by someone else now"
            object.__setattr__(self, "lost", lost)


def _no_script(answer: object) -> bool:
    return isinstance(answer, redis.exceptions.NoScriptError)


def _write_outcome(write: LogWrite, answer: object) -> Exception | None:
    if isinstance(answer, Exception):
        return classified("redis", answer)
    return None if answer else LeaseLost(write.lost)


def _index(record: SagaRecord) -> str:
    if record.status.in_flight:
        return "in_flight"
    if record.status is SagaStatus.FAILED:
        # Parked for an operator: kept without expiry until someone resumes or compensates it.
        return "failed"
    return "finished"


def _saga_keys(keys: RedisKeys, saga_id: str) -> list[str]:
    return [
        keys.saga(saga_id),
        keys.saga_events(saga_id),
        keys.in_flight,
        keys.failed,
        keys.finished,
        keys.refused,
    ]


def _encode(record: SagaRecord, *, created: bool) -> list[str]:
    """The record's fields as HSET takes them; those a saga is created with and that never
    change (name, payload, created_at) on its creation only. A save is fenced by the
    record's epoch, which the creation's one HSET wrote with them (a takeover only raises
    it on a record that exists): a record a save reaches has them already, and sending
    them again cost each outcome write an encode and a longer script call."""
    fields = {
        **(_creation_fields(record) if created else {}),
        "status": record.status.value,
        "step": record.step,
        "updated_at": repr(record.updated_at),
        "attempts": str(record.attempts),
        "error": record.error,
        "done": ",".join(record.done),
        "compensating": "1" if record.compensating else "0",
        "epoch": str(record.epoch),
        "deferrals": str(record.deferrals),
    }
    return [part for pair in fields.items() for part in pair]


def _creation_fields(record: SagaRecord) -> dict[str, str]:
    return {
        "name": record.name,
        "payload": orjson.dumps(record.payload).decode(),
        "created_at": repr(record.created_at),
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
        compensating=fields.get("compensating") == "1",
        epoch=int(fields.get("epoch", 1)),
        recoveries=int(fields.get("recoveries", 0)),
        deferrals=int(fields.get("deferrals", 0)),
    )


def _encode_event(event: SagaEvent) -> list[str]:
    return [
        "at",
        repr(event.at),
        "step",
        event.step,
        "phase",
        event.phase.value,
        "error",
        event.error,
        "tries",
        str(event.tries),
    ]


def _decode_event(fields: dict[str, str]) -> SagaEvent:
    return SagaEvent(
        float(fields["at"]),
        fields["step"],
        Phase(fields["phase"]),
        fields.get("error", ""),
        int(fields.get("tries", 1)),
    )
