"""Typed FastAPI dependencies shared by the services."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from paysys.kit.runtime import Runtime

PROBLEM: dict[int | str, dict[str, Any]] = {
    code: {"content": {"application/problem+json": {}}} for code in (400, 401, 404, 409, 422)
}


async def get_runtime(request: Request) -> Runtime[Any]:
    rt: Runtime[Any] = request.app.state.rt
    return rt


# A service's own alias names its settings class: Annotated[Runtime[UsersSettings], ...].
RuntimeDep = Annotated[Runtime[Any], Depends(get_runtime)]
