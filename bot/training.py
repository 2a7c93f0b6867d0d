"""Train the engine's model only when its data or configuration changed, and start the engine.

The fingerprint covers everything the model is built from. Trained models are kept in
``models/`` and in a per-user cache directory, so a fresh clone on the same machine reuses them.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bot.settings import ROOT

ENGINE_BIN = ROOT / ".venv-engine" / "bin" / "rasa"
ENGINE_PY = ROOT / ".venv-engine" / "bin" / "python"
CONFIG = ROOT / "config" / "engine"
SERVE = CONFIG / "serve.py"
"""Rasa's command line with the engine's run-time fixes (not part of the fingerprint)."""
COMPONENTS = CONFIG / "components"
"""Our own engine components (config.yml names them by module), put on the engine's PYTHONPATH."""
TRAINING_DATA = (ROOT / "nlu_data" / "nlu", ROOT / "nlu_data" / "dialogue")
MODELS = ROOT / "models"


def cache_dir() -> Path:
    """The per-user model cache (``$XDG_CACHE_HOME/lotse/models``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lotse" / "models"


def model_inputs() -> list[Path]:
    """Every file the model is built from, in a stable order."""
    files = [CONFIG / "config.yml", CONFIG / "domain.yml", CONFIG / "constraints.txt"]
    files.extend(sorted(COMPONENTS.glob("*.py")))
    for directory in TRAINING_DATA:
        files.extend(sorted(directory.glob("*.yml")))
    return files


def fingerprint() -> str:
    """A hash of the training data, the configuration and the pinned engine versions."""
    digest = hashlib.sha256()
    for path in model_inputs():
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def model_path(fp: str | None = None) -> Path:
    """Where the model for a fingerprint lives in ``models/``."""
    return MODELS / f"lotse-{fp or fingerprint()}.tar.gz"


def engine_env() -> dict[str, str]:
    """The environment the engine runs with: no telemetry, the action endpoint, the tracker store."""
    env = dict(os.environ)
    env.setdefault("RASA_TELEMETRY_ENABLED", "false")
    env.setdefault("LOTSE_ACTION_ENDPOINT", f"http://localhost:{env.get('APP_PORT', '8000')}/webhook")
    env.setdefault("LOTSE_TRACKER_DB", str(ROOT / "var" / "engine-tracker.db"))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(COMPONENTS), env.get("PYTHONPATH", "")) if p)
    return env


def train(*, force: bool = False) -> Path:
    """Return the current model, training it only if neither models/ nor the cache has it."""
    fp = fingerprint()
    target = model_path(fp)
    cached = cache_dir() / target.name
    if target.exists() and not force:
        print(f"model {target.name} is current")
        return target
    MODELS.mkdir(exist_ok=True)
    if cached.exists() and not force:
        shutil.copy2(cached, target)
        timing = cached.parent / f"{target.name}.seconds"
        if timing.exists():
            shutil.copy2(timing, MODELS / timing.name)
        print(f"model {target.name} taken from the cache {cached.parent}")
        return target
    if not ENGINE_BIN.exists():
        sys.exit("The engine environment is missing: run `make install` first.")
    started = time.monotonic()
    command = [
        str(ENGINE_BIN), "train",
        "--config", str(CONFIG / "config.yml"),
        "--domain", str(CONFIG / "domain.yml"),
        "--data", *(str(d) for d in TRAINING_DATA),
        "--out", str(MODELS),
        "--fixed-model-name", target.name.removesuffix(".tar.gz"),
    ]  # fmt: skip
    print("training:", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT, env=engine_env())
    seconds = time.monotonic() - started
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(target, cached)
    (MODELS / f"{target.name}.seconds").write_text(f"{seconds:.1f}\n")
    shutil.copy2(MODELS / f"{target.name}.seconds", cached.parent / f"{target.name}.seconds")
    print(f"model {target.name} trained in {seconds:.0f} s and cached in {cached.parent}")
    return target


def newest_model() -> Path:
    """The newest model in models/ (what `make engine` serves)."""
    models = sorted(MODELS.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not models:
        sys.exit("No model in models/: run `make train` first.")
    return models[-1]


def engine_command(model: Path, port: int, *, endpoints: Path | None = None) -> list[str]:
    """The command line that serves a model with the HTTP API enabled (through config/engine/serve.py)."""
    return [
        str(ENGINE_PY), str(SERVE), "run",
        "--enable-api",
        "--port", str(port),
        "--model", str(model),
        "--endpoints", str(endpoints or CONFIG / "endpoints.yml"),
        "--credentials", str(CONFIG / "credentials.yml"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Command line: ``train`` (when needed), ``fingerprint``, ``serve-engine``."""
    parser = argparse.ArgumentParser(prog="python -m bot.training")
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser = sub.add_parser("train")
    train_parser.add_argument("--force", action="store_true")
    sub.add_parser("fingerprint")
    sub.add_parser("serve-engine")
    args = parser.parse_args(argv)
    if args.command == "train":
        train(force=args.force)
    elif args.command == "fingerprint":
        print(fingerprint())
    else:
        (ROOT / "var").mkdir(exist_ok=True)
        port = int(os.environ.get("ENGINE_PORT", "5005"))
        os.execve(str(ENGINE_PY), engine_command(newest_model(), port), engine_env())


if __name__ == "__main__":
    main()
