"""Evaluation of routers against per-prompt outcomes of a cheap and a strong model."""
