"""Rasa test stories (nlu_data/tests/) against the trained model, with Rasa's own test runner."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.settings import ROOT
from bot.training import ENGINE_BIN, engine_env, train

pytestmark = pytest.mark.engine


def test_the_main_flows_pass_rasa_test_stories(tmp_path: Path) -> None:
    model = train()
    result = subprocess.run(
        [
            str(ENGINE_BIN),
            "test",
            "core",
            "--model",
            str(model),
            "--stories",
            str(ROOT / "nlu_data" / "tests"),
            "--out",
            str(tmp_path),
            "--fail-on-prediction-errors",
        ],  # fmt: skip
        cwd=tmp_path,
        env=engine_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = tmp_path / "failed_test_stories.yml"
    failed = report.read_text(encoding="utf-8") if report.exists() else "(no report written)"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + failed
    assert "None of the test stories failed" in failed
