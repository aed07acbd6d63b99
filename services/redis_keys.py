"""Every Redis key the service writes, in one place. All start with a fixed prefix, and the
variable part is always a saga id we generated (a UUID), never client input."""

PREFIX = "coupon:"

IN_FLIGHT = PREFIX + "sagas:in-flight"  # sorted set: saga id → last update (epoch seconds)
FAILED = PREFIX + "sagas:failed"  # sorted set: sagas parked for an operator
FINISHED = PREFIX + "sagas:finished"  # sorted set: completed or compensated, trimmed by age
REFUSED = PREFIX + "sagas:refused"  # sorted set: refused before any side effect, trimmed sooner


def saga(saga_id: str) -> str:
    return f"{PREFIX}saga:{saga_id}"


def saga_events(saga_id: str) -> str:
    return f"{PREFIX}saga:{saga_id}:events"
