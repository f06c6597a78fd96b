from __future__ import annotations

from typing import Optional


class RouteReplayError(Exception):
    """An error answer of a RouteReplay server: the HTTP status and the fields of its ``{"error": {...}}`` body."""

    def __init__(self, status: int, message: str, type: Optional[str] = None, param: Optional[str] = None, code: Optional[str] = None):
        super().__init__(f"HTTP {status}: {message}" + (f" (param '{param}')" if param else ""))
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
