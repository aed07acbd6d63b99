"""The directory a gateway's workers share their metrics in (PROMETHEUS_MULTIPROC_DIR,
`coupon-metrics-*` under the temp dir) outlives a gateway killed with SIGKILL; the next
gateway to start on the host removes it, and leaves a live gateway's alone.

The gateways' temp dir is the test's own (TMPDIR), so no other test's gateway is in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.servers import gateway_process, kill_9


def metrics_dirs(temp: Path) -> set[Path]:
    return set(temp.glob("coupon-metrics-*"))


def test_a_killed_gateways_metrics_dir_goes_at_the_next_start_a_live_ones_stays(
    settings, service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # a gateway's environment is ours plus its own

    with gateway_process(settings, tmp_path / "live.log"):
        (live_dir,) = metrics_dirs(temp)
        with gateway_process(settings, tmp_path / "killed.log") as killed:
            (killed_dir,) = metrics_dirs(temp) - {live_dir}
            kill_9(killed)
        assert killed_dir.exists()  # nobody was left to remove it

        with gateway_process(settings, tmp_path / "next.log"):
            assert not killed_dir.exists()
            assert live_dir.exists()
            assert list(live_dir.glob("*.db"))  # its workers' metric files too
            assert len(metrics_dirs(temp)) == 2  # the live one's and the next one's
