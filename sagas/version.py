"""The installed distribution's version, for every entry point's `--version`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    try:
        return version("coupon-service")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"
