"""docs/CONTRACT.md over HTTP, and Schemathesis, with the gateway behind PgBouncer (conftest)."""

from tests.contract.test_schemathesis import *  # noqa: F403
from tests.e2e.test_contract import *  # noqa: F403
