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


def may_have_applied(error: BaseException) -> bool:
    """Whether a failed action may still have changed its store (so it must be undone)."""
    if isinstance(error, DomainError):
        return False
    return not isinstance(error, StoreUnavailable) or error.maybe_applied


def describe(error: BaseException) -> str:
    """One line for operators: the error and, for store failures, the driver's reason."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, StoreUnavailable) and error.__cause__ is not None:
        text += f" ({type(error.__cause__).__name__}: {error.__cause__})"
    return text


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
