"""Throw-away local stores for the tests and for running the service without Docker."""
