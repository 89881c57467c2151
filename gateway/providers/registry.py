"""The set of adapters built for one app: each backend's adapter is its provider type's, as the catalog
(`gateway.providers.catalog`) names it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from gateway.providers.base import Provider
from gateway.providers.catalog import load, spec
from gateway.vocab.settings import Backend


class Providers:
    """One adapter per configured backend, built at start-up and closed at shutdown."""

    def __init__(self, by_name: Mapping[str, Provider]) -> None:
        self._by_name = dict(by_name)

    @classmethod
    def for_backends(cls, backends: list[Backend]) -> Providers:
        """The adapter of each backend's provider type (the app's case; tests may pass fakes instead)."""
        return cls({b.name: load(spec(b.provider).adapter)(b) for b in backends})

    def __getitem__(self, name: str) -> Provider:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Provider]:
        return iter(self._by_name.values())

    async def aclose(self) -> None:
        for p in self._by_name.values():
            await p.aclose()
