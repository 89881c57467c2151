"""Exact and semantic response caches, isolated per tenant."""
