"""`make eval`: the trained engine against the held-out sets written apart from the training data.

Prints and writes (docs/eval/report.md, report.json, f1.png) per language: intent accuracy and
macro-F1, out-of-scope recall, the most frequent confusions, language-detection accuracy on
messages of three words or more, language flips on one- and two-word replies, and how often an
in-scope answer would be in the client's language.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from bot import LANGUAGES
from bot.content import load_content
from bot.language import LanguageDetector, decide_language
from bot.settings import ROOT

HELDOUT = ROOT / "nlu_data" / "heldout"
HELDOUT_SETS = {"A": HELDOUT, "B": ROOT / "nlu_data" / "heldout2"}
"""Held-out sets, each written apart from the training data and from the other set (nlu_data/README.md).
A keeps its language-detection messages in ``language_id.yml``; B in each file under ``language_id``."""
REPORT_DIR = ROOT / "docs" / "eval"
IN_SCOPE = ("ask_language_course", "ask_recognition", "ask_qualification", "ask_followup")
NOT_ANSWERED = ("out_of_scope", "nlu_fallback")


@dataclass
class LanguageScores:
    """The figures for one language."""

    examples: int = 0
    accuracy: float = 0.0
    macro_f1: float = 0.0
    oos_recall: float = 0.0
    detection_accuracy: float = 0.0
    detection_examples: int = 0
    detection_on_intents: float = 0.0
    short_reply_flips: int = 0
    answer_language: float = 0.0


@dataclass
class Report:
    """The whole evaluation."""

    languages: dict[str, LanguageScores] = field(default_factory=dict)
    confusions: list[tuple[str, str, int]] = field(default_factory=list)
    overall_macro_f1: float = 0.0
    overall_oos_recall: float = 0.0
    overall_detection: float = 0.0
    seconds: float = 0.0
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    """The fallback sweep: macro-F1 and out-of-scope recall for other FallbackClassifier settings."""


def load_heldout(lang: str, folder: Path = HELDOUT) -> dict[str, Any]:
    """A language's held-out file."""
    data: dict[str, Any] = yaml.safe_load((folder / f"{lang}.yml").read_text(encoding="utf-8"))
    return data


def language_id_messages(folder: Path) -> dict[str, list[str]]:
    """A set's messages for language detection, per language (three words or more each)."""
    shared = folder / "language_id.yml"
    if shared.exists():
        data: dict[str, list[Any]] = yaml.safe_load(shared.read_text(encoding="utf-8")) or {}
        return {lang: [str(t) for t in data.get(lang, [])] for lang in LANGUAGES}
    return {lang: [str(t) for t in load_heldout(lang, folder).get("language_id", [])] for lang in LANGUAGES}


def macro_f1(pairs: list[tuple[str, str]]) -> float:
    """Macro-F1 over the true intents (nlu_fallback counts as a wrong prediction)."""
    labels = sorted({truth for truth, _ in pairs})
    scores = []
    for label in labels:
        tp = sum(1 for t, p in pairs if t == label and p == label)
        fp = sum(1 for t, p in pairs if t != label and p == label)
        fn = sum(1 for t, p in pairs if t == label and p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def oos_recall(pairs: list[tuple[str, str]]) -> float:
    """Out-of-scope messages that were not answered as a topic (out_of_scope or nlu_fallback)."""
    oos = [p for t, p in pairs if t == "out_of_scope"]
    return sum(p in NOT_ANSWERED for p in oos) / len(oos) if oos else 1.0


Ranking = list[tuple[str, float]]
SWEEP = [(t, a) for t in (0.10, 0.15, 0.20, 0.25, 0.30) for a in (0.0, 0.05, 0.10, 0.15)]
"""(threshold, ambiguity_threshold) pairs the sweep tries; the configured pair is marked in the report."""


def with_fallback(ranking: Ranking, threshold: float, ambiguity: float) -> str:
    """The intent Rasa's FallbackClassifier would give for a classifier ranking and these settings."""
    ranked = sorted((r for r in ranking if r[0] != "nlu_fallback"), key=lambda r: -r[1])
    if not ranked:
        return "nlu_fallback"
    top = ranked[0][1]
    second = ranked[1][1] if len(ranked) > 1 else 0.0
    if top < threshold or top - second < ambiguity:
        return "nlu_fallback"
    return ranked[0][0]


def threshold_sweep(examples: dict[str, list[tuple[str, Ranking]]]) -> list[dict[str, Any]]:
    """Per language and setting: macro-F1 and out-of-scope recall from the same rankings (no retraining)."""
    rows = []
    for threshold, ambiguity in SWEEP:
        row: dict[str, Any] = {"threshold": threshold, "ambiguity": ambiguity, "languages": {}}
        everything: list[tuple[str, str]] = []
        for lang, items in examples.items():
            pairs = [(truth, with_fallback(ranking, threshold, ambiguity)) for truth, ranking in items]
            everything += pairs
            scores = {"macro_f1": round(macro_f1(pairs), 3), "oos": round(oos_recall(pairs), 3)}
            row["languages"][lang] = scores
        row["macro_f1"] = round(macro_f1(everything), 3)
        row["oos"] = round(oos_recall(everything), 3)
        row["min_f1"] = min(v["macro_f1"] for v in row["languages"].values()) if row["languages"] else 0.0
        rows.append(row)
    return rows


def fallback_settings(config: Path) -> tuple[float, float]:
    """The FallbackClassifier's threshold and ambiguity threshold in the engine's config."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    for component in data.get("pipeline", []):
        if component.get("name") == "FallbackClassifier":
            return float(component.get("threshold", 0.3)), float(component.get("ambiguity_threshold", 0.1))
    return 0.0, 0.0


def evaluate(parse: Callable[[str], str], detector: LanguageDetector, folder: Path = HELDOUT) -> Report:
    """Score every example of one held-out set; ``parse`` returns the predicted intent name."""
    started = time.monotonic()
    report = Report()
    all_pairs: list[tuple[str, str]] = []
    confusions: Counter[tuple[str, str]] = Counter()
    detected_ok = detected_total = 0
    language_id = language_id_messages(folder)
    for lang in LANGUAGES:
        data = load_heldout(lang, folder)
        pairs: list[tuple[str, str]] = []
        scores = LanguageScores()
        in_scope_total = in_scope_ok = mixed_total = mixed_ok = 0
        for text in language_id.get(lang, []):
            scores.detection_examples += 1
            scores.detection_accuracy += detector.detect(str(text)).language == lang
        for intent, examples in data["intents"].items():
            for example in examples:
                text = str(example)
                predicted = parse(text)
                pairs.append((intent, predicted))
                if predicted != intent:
                    confusions[(intent, predicted)] += 1
                detection = detector.detect(text)
                if len(text.split()) >= 3:
                    mixed_total += 1
                    mixed_ok += detection.language == lang
                if intent in IN_SCOPE:
                    # A client whose language is known (chosen or detected earlier) writes this message.
                    in_scope_total += 1
                    decision = decide_language(
                        current=lang, source="detected", detection=detection, hint=None, default="de"
                    )
                    in_scope_ok += decision.language == lang
        for reply in data.get("short_replies", []):
            for current in LANGUAGES:
                decision = decide_language(
                    current=current, source="detected", detection=detector.detect(str(reply)),
                    hint=None, default="de",
                )  # fmt: skip
                scores.short_reply_flips += decision.language != current and len(str(reply).split()) <= 2
        scores.examples = len(pairs)
        scores.accuracy = sum(t == p for t, p in pairs) / len(pairs)
        scores.macro_f1 = macro_f1(pairs)
        scores.oos_recall = oos_recall(pairs)
        detected_ok += int(scores.detection_accuracy)
        detected_total += scores.detection_examples
        scores.detection_accuracy = (
            scores.detection_accuracy / scores.detection_examples if scores.detection_examples else 0.0
        )
        scores.answer_language = in_scope_ok / in_scope_total if in_scope_total else 0.0
        scores.detection_on_intents = mixed_ok / mixed_total if mixed_total else 0.0
        report.languages[lang] = scores
        all_pairs.extend(pairs)
    report.confusions = [(t, p, n) for (t, p), n in confusions.most_common(15)]
    report.overall_macro_f1 = macro_f1(all_pairs)
    report.overall_oos_recall = oos_recall(all_pairs)
    report.overall_detection = detected_ok / detected_total if detected_total else 0.0
    report.seconds = time.monotonic() - started
    return report


SET_NOTES = {
    "A": "written by the project's first NLU authors beside the training data (never trained on)",
    "B": "written later by separate writers who saw neither the training data nor set A",
}


def render_markdown(reports: dict[str, Report], *, fingerprint: str, training_seconds: str) -> str:
    """The reports of every held-out set as Markdown tables."""
    lines = [
        "# NLU and language evaluation",
        "",
        f"Model `lotse-{fingerprint}` (training took {training_seconds} s). Produced by `make eval`. "
        "Each held-out set is written apart from the training data and never trained on:",
        "",
    ]
    for name in reports:
        folder = HELDOUT_SETS[name].relative_to(ROOT)
        lines.append(f"- **Set {name}** (`{folder}/`): {SET_NOTES.get(name, '')}.")
    lines.append("")
    for name, report in reports.items():
        lines += _set_section(name, report)
    lines += [
        "Detection (language_id) is measured on messages of three or more words written for that "
        "purpose; the intent sets also hold messages written wholly in German or in Latin-script "
        "Arabic/Persian/Russian under another language, so their figure is lower. \"Answer in client's "
        'language": for an in-scope question from a client whose language is already known, the share '
        "answered in that language (a confident contradicting detection switches it).",
        "",
        "![macro-F1 per language](f1.png)",
        "",
    ]
    sweep = next((r.thresholds for r in reports.values() if r.thresholds), [])
    if sweep:
        configured = fallback_settings(ROOT / "config" / "engine" / "config.yml")
        lines += [
            "## Fallback settings",
            "",
            "The same classifier rankings (both sets together) scored with other FallbackClassifier "
            "settings (threshold, ambiguity threshold): lower settings answer more and fall back less, "
            "higher ones send more out-of-scope messages to the fallback. ◀ marks the configured pair.",
            "",
            "| threshold | ambiguity | overall macro-F1 | lowest language macro-F1 | out-of-scope recall |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in sweep:
            mark = " ◀" if (row["threshold"], row["ambiguity"]) == configured else ""
            lines.append(
                f"| {row['threshold']:.2f} | {row['ambiguity']:.2f} | {row['macro_f1']:.3f} "
                f"| {row['min_f1']:.3f} | {row['oos']:.3f}{mark} |"
            )
        lines.append("")
    return "\n".join(lines)


def _set_section(name: str, report: Report) -> list[str]:
    lines = [
        f"## Set {name}",
        "",
        "| language | examples | intent accuracy | macro-F1 | out-of-scope recall "
        "| detection (language_id) | detection (intent set, ≥3 words) "
        "| answer in client's language | flips on short replies |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for lang, s in report.languages.items():
        lines.append(
            f"| {lang} | {s.examples} | {s.accuracy:.3f} | {s.macro_f1:.3f} | {s.oos_recall:.3f} "
            f"| {s.detection_accuracy:.3f} | {s.detection_on_intents:.3f} | {s.answer_language:.3f} "
            f"| {s.short_reply_flips} |"
        )
    lines += [
        "",
        f"Overall macro-F1 {report.overall_macro_f1:.3f}, out-of-scope recall "
        f"{report.overall_oos_recall:.3f} (out_of_scope or nlu_fallback), language detection "
        f"{report.overall_detection:.3f}.",
        "",
        "Most frequent confusions (true → predicted):",
        "",
        "| true | predicted | count |",
        "| --- | --- | ---: |",
    ]
    lines += [f"| {t} | {p} | {n} |" for t, p, n in report.confusions]
    lines.append("")
    return lines


def plot(reports: dict[str, Report], path: Path) -> None:
    """A bar chart of macro-F1 per language and set, and detection accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = list(LANGUAGES)
    bars = [
        (f"macro-F1, set {name}", [r.languages[lang].macro_f1 for lang in langs])
        for name, r in reports.items()
    ]
    bars.append(
        (
            "language detection (all sets)",
            [
                sum(
                    r.languages[lang].detection_accuracy * r.languages[lang].detection_examples
                    for r in reports.values()
                )
                / max(1, sum(r.languages[lang].detection_examples for r in reports.values()))
                for lang in langs
            ],
        )
    )
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(8.5, 3.8), dpi=110)
    for i, (label, values) in enumerate(bars):
        offset = (i - (len(bars) - 1) / 2) * width
        ax.bar([x + offset for x in range(len(langs))], values, width=width, label=label)
    ax.axhline(0.92, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xticks(list(range(len(langs))), langs)
    ax.set_ylim(0.5, 1.0)
    ax.set_title("Held-out evaluation per language")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    """Start the engine with the current model, evaluate every held-out set, write the report."""
    from bot.training import engine_command, engine_env, fingerprint, train

    model = train()
    port = int(os.environ.get("EVAL_ENGINE_PORT", "5095"))
    env = engine_env()
    env["LOTSE_TRACKER_DB"] = str(ROOT / "var" / "eval-tracker.db")
    (ROOT / "var").mkdir(exist_ok=True)
    with (ROOT / "var" / "eval-engine.log").open("wb") as log:
        process = subprocess.Popen(engine_command(model, port), env=env, stdout=log, stderr=subprocess.STDOUT)
    reports: dict[str, Report] = {}
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/status", timeout=2).json().get("model_file"):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("the engine did not start; see var/eval-engine.log")
            time.sleep(0.5)
        with httpx.Client(base_url=url, timeout=30) as http:
            rankings: dict[str, Ranking] = {}

            def parse(text: str) -> str:
                result = http.post("/model/parse", json={"text": text}).json()
                rankings[text] = [(str(r["name"]), float(r["confidence"])) for r in result["intent_ranking"]]
                return str(result["intent"]["name"])

            content = load_content(ROOT / "content")
            detector = LanguageDetector(content.lexicons["de"].embedded_terms)
            examples: dict[str, list[tuple[str, Ranking]]] = {lang: [] for lang in LANGUAGES}
            for name, folder in HELDOUT_SETS.items():
                reports[name] = evaluate(parse, detector, folder)
                for lang in LANGUAGES:
                    examples[lang] += [
                        (intent, rankings[str(example)])
                        for intent, items in load_heldout(lang, folder)["intents"].items()
                        for example in items
                    ]
            first = next(iter(reports.values()))
            first.thresholds = threshold_sweep(examples)
    finally:
        process.terminate()
        process.wait(timeout=30)
    fp = fingerprint()
    seconds_file = model.parent / f"{model.name}.seconds"
    training_seconds = seconds_file.read_text().strip() if seconds_file.exists() else "?"
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(reports, fingerprint=fp, training_seconds=training_seconds)
    (REPORT_DIR / "report.md").write_text(markdown, encoding="utf-8")
    data = {"model": f"lotse-{fp}", "sets": {name: asdict(r) for name, r in reports.items()}}
    (REPORT_DIR / "report.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    plot(reports, REPORT_DIR / "f1.png")
    print(markdown)


if __name__ == "__main__":
    main()
