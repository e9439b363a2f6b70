"""The audit log: append-only events, chained by hash per request."""
