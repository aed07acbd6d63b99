"""The gateway's processes: how many, what is checked before they start, where they
listen, how they stop."""
