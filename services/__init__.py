"""One adapter per store: inventory (asyncpg), claims (PyMongo async), saga log (redis-py)."""
