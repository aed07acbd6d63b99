"""What a WAIT's answer means for the writes before it (services/replica_wait.py)."""

from __future__ import annotations

import redis.exceptions

from services.replica_wait import ReplicaWait


class Told:
    """A ReplicationObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.shortfalls: list[tuple[int, int, int]] = []
        self.met_times = 0

    def short(self, writes: int, acknowledged: int, wanted: int) -> None:
        self.shortfalls.append((writes, acknowledged, wanted))

    def met(self) -> None:
        self.met_times += 1


def test_off_leaves_the_answers_as_they_are():
    told = Told()
    assert ReplicaWait(0, 100, told).settle([1, 0]) == [1, 0]
    assert (told.shortfalls, told.met_times) == ([], 0)


def test_the_waits_answer_is_taken_off_and_enough_replicas_is_met():
    told = Told()
    assert ReplicaWait(1, 100, told).settle([1, 1, 2]) == [1, 1]
    assert (told.shortfalls, told.met_times) == ([], 1)


def test_too_few_replicas_is_told_with_the_writes_done():
    """A fenced refusal (0) and a write that failed took nothing: not counted."""
    told = Told()
    failed = redis.exceptions.ResponseError("WRONGTYPE")
    assert ReplicaWait(2, 100, told).settle([1, 0, failed, 1, 1]) == [1, 0, failed, 1]
    assert told.shortfalls == [(2, 1, 2)]


def test_a_wait_that_failed_counts_as_no_replica():
    told = Told()
    refused = redis.exceptions.ResponseError("ERR WAIT cannot be used with replica instances")
    ReplicaWait(1, 100, told).settle([1, refused])
    assert told.shortfalls == [(1, 0, 1)]


def test_nothing_written_is_nothing_to_judge():
    told = Told()
    ReplicaWait(1, 100, told).settle([0, 0])
    assert (told.shortfalls, told.met_times) == ([], 0)
