"""The operator's console: a sale, its sagas, and the buttons that re-drive them, served
by the gateway at /console (docs/CONSOLE.md). Its reads and actions are the replay
tool's (sagas/operations.py); this package renders them and guards the door."""
