"""A small LibreTranslate-compatible server for tests: deterministic "translations" on loopback."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class FakeLibreTranslate:
    """Answers POST /translate like LibreTranslate; records requests; can be slow or failing."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.delay = 0.0
        self.status = 200
        self.app = Starlette(routes=[Route("/translate", self.translate, methods=["POST"])])

    async def translate(self, request: Request) -> JSONResponse:
        """Prefix the text with the target language, keeping protected tokens intact."""
        params = dict(request.query_params)
        if not params.get("q"):
            params.update({k: str(v) for k, v in (await request.form()).items()})
        self.requests.append(params)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return JSONResponse({"error": "unavailable"}, status_code=self.status)
        return JSONResponse({"translatedText": f"<{params['target']}> {params['q']}"})
