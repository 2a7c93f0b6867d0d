"""Start the engine: Rasa's own command line, after one measured fix to its action-server client.

Usage (the same arguments as ``rasa``):  .venv-engine/bin/python config/engine/serve.py run ...

Rasa 3.6 checks every action-server response with ``jsonschema.validate``, which first checks
Rasa's fixed response schema against the JSON Schema meta-schema, on every call. Profiled with
py-spy (issue 8), that check took about a third of the engine's CPU per turn. Here the schema is
checked once, at start-up, and each response is then validated with the compiled validator. A valid
response passes as before; an invalid one goes through Rasa's own method, so the error and its
message stay Rasa's.

This file is not part of the model's fingerprint: it changes how the engine runs, not what it learnt.
"""

from __future__ import annotations

import sys
from typing import Any


def compile_action_response_validation() -> None:
    """Replace ``RemoteAction._validate_action_result`` by one with a validator compiled once."""
    from jsonschema.validators import validator_for
    from rasa.core.actions.action import RemoteAction

    original = RemoteAction._validate_action_result
    if getattr(original, "lotse_compiled", False):
        return
    schema = RemoteAction.action_response_format_spec()
    validator_class = validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)

    def _validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
        if validator.is_valid(result):
            return True
        return original(self, result)  # raises Rasa's ValidationError with Rasa's message

    _validate_action_result.lotse_compiled = True  # type: ignore[attr-defined]
    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[method-assign]


# At import, not only under __main__: a Sanic worker started by "spawn" imports this module again.
compile_action_response_validation()

if __name__ == "__main__":
    from rasa.__main__ import main

    sys.argv[0] = "rasa"
    main()
