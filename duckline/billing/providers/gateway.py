"""The one entry point to payment providers: which provider takes which method."""

from __future__ import annotations

from collections.abc import Mapping

from duckline.billing.order_states import PaymentMethod
from duckline.billing.providers import PaymentProvider
from duckline.core.errors import DomainError, ErrorCode


class Payments:
    def __init__(self, providers: list[PaymentProvider], routes: Mapping[PaymentMethod, str]) -> None:
        self._by_name = {p.name: p for p in providers}
        self._routes = {method: name for method, name in routes.items() if name in self._by_name}

    def for_method(self, method: PaymentMethod) -> PaymentProvider:
        name = self._routes.get(method)
        if name is None:
            raise DomainError(ErrorCode.PAYMENT_METHOD_UNAVAILABLE, field="payment_method")
        return self._by_name[name]

    def by_name(self, name: str) -> PaymentProvider:
        provider = self._by_name.get(name)
        if provider is None:
            raise DomainError(ErrorCode.NOT_FOUND)
        return provider

    def methods(self) -> list[PaymentMethod]:
        return sorted(self._routes, key=lambda m: m.value)

    def provider_name(self, method: PaymentMethod) -> str:
        return self.for_method(method).name
