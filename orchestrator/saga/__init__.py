"""The saga engine, its retry policy, and recovery of sagas whose driver is gone."""
