"""Dispatch a request straight to its API route, found through an index of the paths' literal segments.

FastAPI keeps included routers nested and, on every request, walks every route of every included
router (and matches the chosen one a second time when handling it). Here the routes are listed
once, in FastAPI's order, and filed in a trie by the literal segments their paths start with
(`/api/v1/orders/{order_id}` under api → v1 → orders): a request only tries the routes whose
leading literals are its own first segments, which are the only ones that could match.

The fast path takes the first candidate that matches fully (an earlier match for another method
loses to it, as in FastAPI), provided no earlier candidate is something other than an API route
(a mount, a plain route, a frontend group). Everything else —
a 405 for the wrong method, a 404, the trailing-slash redirect, websockets, the lifespan — goes
to FastAPI's own router unchanged, so the answer is always the one FastAPI would have given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.routing import APIRoute, APIRouter, _EffectiveRouteContext, _IncludedRouter
from starlette._utils import get_route_path
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

# FastAPI's own scope keys (fastapi.routing): what its router leaves in scope["fastapi"] when it
# has chosen a route through included routers; APIRoute.handle reads the effective context.
_FASTAPI_SCOPE = "fastapi"
_EFFECTIVE_ROUTE_CONTEXT = "effective_route_context"
_INCLUDED_ROUTER = "included_router"


@dataclass(frozen=True)
class _Candidate:
    """One route in FastAPI's order; `context` is None for what only FastAPI's router may dispatch."""

    order: int
    context: _EffectiveRouteContext | None
    included_router: _IncludedRouter | None


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    ending_here: list[_Candidate] = field(default_factory=list)
    # Every candidate whose literal segments are a prefix of this node's path, in FastAPI's order.
    candidates: tuple[_Candidate, ...] = ()


def _literal_segments(path: str) -> list[str]:
    """The segments before the first one with a parameter: the ones a matching path must start with."""
    literals = []
    for segment in path.split("/")[1:]:
        if "{" in segment:
            break
        literals.append(segment)
    return literals


class RouteIndex:
    """The router's dispatcher (`router.middleware_stack`), with FastAPI's as the fallback."""

    def __init__(self, router: APIRouter) -> None:
        self.router = router
        self.fallback: ASGIApp = router.app
        self._version: int | None = None
        self._root = _Node()

    @classmethod
    def install(cls, router: APIRouter) -> None:
        # Router-level middleware would sit in middleware_stack; the fast path would skip it.
        if router.middleware_stack != router.app:
            raise RuntimeError("the route index assumes a router without middleware")
        router.middleware_stack = cls(router)

    def _build(self) -> None:
        entries: list[tuple[list[str] | None, _EffectiveRouteContext | None, _IncludedRouter | None]] = []

        def walk(routes: list[Any], parent: _IncludedRouter | None) -> None:
            for route in routes:
                if isinstance(route, _IncludedRouter):
                    walk(route.effective_candidates(), route)
                elif isinstance(route, _EffectiveRouteContext) and isinstance(route.original_route, APIRoute):
                    entries.append((_literal_segments(route.path_format), route, parent))
                else:
                    # A mount, a plain route, a frontend group: filed under its path's literals
                    # when it has one (so it still shadows what follows it), else everywhere.
                    path = getattr(getattr(route, "starlette_route", None) or route, "path", None)
                    literals = _literal_segments(path) if isinstance(path, str) and path else []
                    entries.append((literals, None, parent))

        walk(self.router.routes, None)
        root = _Node()
        for order, (literals, context, parent) in enumerate(entries):
            node = root
            for segment in literals or []:
                node = node.children.setdefault(segment, _Node())
            node.ending_here.append(_Candidate(order, context, parent))

        def collect(node: _Node, inherited: list[_Candidate]) -> None:
            mine = sorted([*inherited, *node.ending_here], key=lambda c: c.order)
            node.candidates = tuple(mine)
            for child in node.children.values():
                collect(child, mine)

        collect(root, [])
        self._root = root

    def _candidates(self, path: str) -> tuple[_Candidate, ...]:
        node = self._root
        for segment in path.split("/")[1:]:
            child = node.children.get(segment)
            if child is None:
                break
            node = child
        return node.candidates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        version = self.router._get_routes_version()
        if version != self._version:  # routes added since: file them again
            self._build()
            self._version = version
        for candidate in self._candidates(get_route_path(scope)):
            context = candidate.context
            if context is None:
                break  # something only FastAPI's router knows how to match comes first
            match, child_scope = context.matches(scope)
            if match is Match.FULL:
                await self._handle(candidate, context, child_scope, scope, receive, send)
                return
            # A partial match (another method) loses to any later full one, as in FastAPI.
        await self.fallback(scope, receive, send)

    async def _handle(
        self,
        candidate: _Candidate,
        context: _EffectiveRouteContext,
        child_scope: Scope,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        # What FastAPI's router and _IncludedRouter._handle_selected leave in the scope.
        scope.setdefault("router", self.router)
        scope.update(child_scope)
        route = context.original_route
        assert isinstance(route, APIRoute)
        scope["route"] = route
        fastapi_scope = scope.setdefault(_FASTAPI_SCOPE, {})
        if candidate.included_router is not None:
            fastapi_scope[_INCLUDED_ROUTER] = candidate.included_router
        fastapi_scope[_EFFECTIVE_ROUTE_CONTEXT] = context
        await route.handle(scope, receive, send)
