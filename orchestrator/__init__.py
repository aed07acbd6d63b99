"""The aiohttp gateway: app factory, routes, models, error mapping, settings, saga engine."""
