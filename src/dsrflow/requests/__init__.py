"""Requests: the domain layer (tables, queries, and the service that commits)."""
