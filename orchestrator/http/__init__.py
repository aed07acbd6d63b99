"""The HTTP edge: app factory, routes, views, models, the error table, limits, OpenAPI."""
