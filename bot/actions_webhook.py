"""The engine's action endpoint, served by the app: rasa-sdk's executor runs the actions in-process."""

from __future__ import annotations

import json
import logging

from rasa_sdk import Action
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import ActionExecutionRejection, ActionNotFoundException
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger(__name__)


class ActionWebhook:
    """POST /webhook in rasa-sdk's request and response shape."""

    def __init__(self, actions: list[Action]) -> None:
        self.executor = ActionExecutor()
        for action in actions:
            self.executor.register_action(action)

    async def handle(self, request: Request) -> JSONResponse:
        """Run the action the engine asks for and return its events and responses."""
        try:
            action_call = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return JSONResponse({"error": "Invalid body request"}, status_code=400)
        if not isinstance(action_call, dict):
            return JSONResponse({"error": "Invalid body request"}, status_code=400)
        try:
            result = await self.executor.run(action_call)
        except ActionExecutionRejection as exc:
            return JSONResponse({"error": exc.message, "action_name": exc.action_name}, status_code=400)
        except ActionNotFoundException as exc:
            log.error("engine asked for an unknown action: %s", exc.action_name)
            return JSONResponse({"error": exc.message, "action_name": exc.action_name}, status_code=404)
        return JSONResponse(result.model_dump() if result else None)
