"""The gateway: settings, the one place that builds the service, logs and metrics; the HTTP
edge, the saga engine, the coupon service and the processes in their subpackages."""
