"""Metrics rules that need no store."""

from __future__ import annotations

import subprocess
import sys

from orchestrator.metrics import reason
from sagas.errors import AlreadyClaimed, CouponNotFound, OutOfStock


def test_a_refusal_is_labelled_with_the_contracts_error_code():
    assert reason(OutOfStock("x")) == "out_of_stock"
    assert reason(AlreadyClaimed("x")) == "already_claimed"
    assert reason(CouponNotFound("x")) == "coupon_not_found"


def test_the_entry_point_does_not_load_prometheus_client_before_it_sets_up_its_workers():
    """prometheus_client picks single- or multi-process values when first imported, which
    must come after `coupon-service` has named the workers' shared directory."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, orchestrator.main; print('prometheus_client' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "False"
