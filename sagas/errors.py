"""Domain errors. Business rejections end a saga at once; StoreUnavailable is transient."""

from __future__ import annotations


class DomainError(Exception):
    """A business rule said no. The request was understood; retrying will not help."""


class CouponNotFound(DomainError):
    pass


class CouponExists(DomainError):
    pass


class AlreadyClaimed(DomainError):
    pass


class ClaimInFlight(AlreadyClaimed):
    """The user's unit of the coupon is held by another saga of theirs, not settled yet
    (`holder`): already claimed, unless that saga is being undone."""

    def __init__(self, coupon_name: str, holder: str) -> None:
        super().__init__(coupon_name, holder)  # args rebuild it: a batch hands each caller a copy
        self.coupon_name = coupon_name
        self.holder = holder

    def __str__(self) -> str:
        return f"{self.coupon_name}: held by saga {self.holder}, in flight"


class OutOfStock(DomainError):
    pass


class StoreUnavailable(Exception):
    """A store did not answer in time or dropped the connection: transient, retryable.

    `maybe_applied` is False only when the request provably never reached the store
    (no connection could be made); otherwise the call may have taken effect.
    """

    def __init__(self, store: str, *, maybe_applied: bool = True) -> None:
        super().__init__(store)  # args rebuild it: a batch hands each caller a copy
        self.store = store
        self.maybe_applied = maybe_applied

    def __str__(self) -> str:
        return f"{self.store} is unavailable"


class NotReconciled(StoreUnavailable):
    """PostgreSQL is on a history the stock was not reconciled on yet (a promoted standby
    that may lack the newest commits): nothing was reserved, and the reconciliation that
    restores what the failover lost is under way (sagas/lineage.py)."""

    def __init__(self, store: str = "postgresql") -> None:
        super().__init__(store, maybe_applied=False)

    def __str__(self) -> str:
        return f"{self.store} is on a new timeline, not reconciled yet"


def may_have_applied(error: BaseException) -> bool:
    """Whether a failed action may still have changed its store (so it must be undone)."""
    if isinstance(error, (DomainError, StoreNotSetUp)):  # the store said no
        return False
    return not isinstance(error, StoreUnavailable) or error.maybe_applied


def describe(error: BaseException) -> str:
    """One line for operators: the error and, for store failures, the driver's reason."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, StoreUnavailable) and error.__cause__ is not None:
        text += f" ({type(error.__cause__).__name__}: {error.__cause__})"
    return text


class InDoubt(Exception):
    """A saga did not settle while its caller waited: it may yet stand, or be undone (its
    effects may be in the stores meanwhile). A store or the saga log is away, or another
    driver took the saga over and has not decided yet; asking again later tells."""

    def __init__(self, saga_id: str, why: str) -> None:
        super().__init__(saga_id, why)  # args rebuild it
        self.saga_id = saga_id
        self.why = why

    def __str__(self) -> str:
        return f"saga {self.saga_id} is not settled: {self.why}"


class LeaseLost(Exception):
    """Another driver took this saga over (or its record is gone): stop driving it."""


class SagaConflict(Exception):
    """A saga action found state another run of the same saga left (e.g. confirm after release)."""


class StoreNotSetUp(Exception):
    """A store answers but is not set up for us (no such database or role, no schema, too
    few connections for the budget): waiting will not help; `advice` says what to do."""

    def __init__(self, store: str, advice: str) -> None:
        super().__init__(store, advice)  # args rebuild it: a batch hands each caller a copy
        self.store = store
        self.advice = advice

    def __str__(self) -> str:
        return f"{self.store}: {self.advice}"
