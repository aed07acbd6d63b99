"""Saga definitions (the claim saga), their domain errors and records, and the replay tool's verbs.

Nothing here talks to a store directly: steps reach the stores through the Protocols
in `sagas.ports`, which `services/` implements.
"""
