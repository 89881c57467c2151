"""Stores and infrastructure the request path leans on: the limit counters, cached lookups, change notifications,
request ids, circuit breakers, settlement replays, metrics, traces, process logs, and small async and process
helpers. (The database and the caches have their own folders: db/, cache/.)"""
