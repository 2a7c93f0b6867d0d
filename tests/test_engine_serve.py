"""config/engine/serve.py: the engine's start-up fix keeps Rasa's validation of action responses."""

from __future__ import annotations

import json
import subprocess

import pytest

from bot.training import ENGINE_PY, SERVE, engine_env

pytestmark = pytest.mark.engine

# Runs in the engine's own environment (Rasa on 3.10): import the launcher as the engine does, then
# validate a real response shape, a broken one and count how often the schema itself is checked.
PROBE = r"""
import json, runpy, sys
from jsonschema import ValidationError
from jsonschema.validators import Draft202012Validator, validator_for

checks = []
for cls in {validator_for({}), Draft202012Validator}:
    original_check = cls.check_schema.__func__
    def counting(cls, schema, *args, _original=original_check, **kwargs):
        checks.append(1)
        return _original(cls, schema, *args, **kwargs)
    cls.check_schema = classmethod(counting)

runpy.run_path(sys.argv[1], run_name="lotse_engine_serve")
from rasa.core.actions.action import RemoteAction

action = RemoteAction("action_answer", None)
valid = {
    "events": [{"event": "slot", "name": "topic", "value": "language_course"}],
    "responses": [{"text": None, "buttons": [], "custom": {"key": "answer.x"}, "attachment": None}],
}
results = [action._validate_action_result(valid) for _ in range(50)]
try:
    action._validate_action_result({"events": "not a list", "responses": []})
    invalid = "accepted"
except ValidationError as error:
    invalid = error.message
print(json.dumps({
    "compiled": getattr(RemoteAction._validate_action_result, "lotse_compiled", False),
    "valid": results.count(True),
    "invalid": invalid,
    "schema_checks": len(checks),
}))
"""


def test_action_responses_are_validated_with_a_schema_checked_once() -> None:
    result = subprocess.run(
        [str(ENGINE_PY), "-c", PROBE, str(SERVE)],
        env=engine_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["compiled"] is True
    assert probe["valid"] == 50
    # An invalid response is still refused, with Rasa's own explanation.
    assert "Failed to validate Action server response" in probe["invalid"]
    # Once at start-up and once more for the one invalid response (Rasa's own path); not per call.
    assert probe["schema_checks"] == 2

