"""The trained engine on the held-out sets: the quality targets hold in every language."""

from __future__ import annotations

import httpx
import pytest

from bot import LANGUAGES
from bot.evaluation import HELDOUT_SETS, Report, evaluate
from tests.conftest import LiveStack

pytestmark = pytest.mark.engine

# The product targets (issue 3), on both held-out sets; the measured values are in docs/eval/report.md
# (model lotse-444fbac846050af3: set A lowest language fr 0.935, out-of-scope recall 0.941;
# set B, written later by writers who saw neither the training data nor set A: lowest fa 0.974, 0.963).
MACRO_F1 = 0.92
OOS_RECALL = 0.90
DETECTION = 0.97
ANSWER_LANGUAGE = 0.95


@pytest.fixture(scope="module")
def reports(live: LiveStack) -> dict[str, Report]:
    detector = live.services.router.detector
    with httpx.Client(base_url=live.engine.url, timeout=30) as http:

        def parse(text: str) -> str:
            return str(http.post("/model/parse", json={"text": text}).json()["intent"]["name"])

        return {name: evaluate(parse, detector, folder) for name, folder in HELDOUT_SETS.items()}


@pytest.fixture(params=sorted(HELDOUT_SETS))
def report(request: pytest.FixtureRequest, reports: dict[str, Report]) -> Report:
    return reports[request.param]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_intent_macro_f1_in_every_language(report: Report, lang: str) -> None:
    assert report.languages[lang].macro_f1 >= MACRO_F1, report.languages[lang]


def test_out_of_scope_recall(report: Report) -> None:
    assert report.overall_oos_recall >= OOS_RECALL


def test_language_detection_on_messages_of_three_words_or_more(report: Report) -> None:
    assert report.overall_detection >= DETECTION


@pytest.mark.parametrize("lang", LANGUAGES)
def test_answers_stay_in_the_clients_language(report: Report, lang: str) -> None:
    assert report.languages[lang].answer_language >= ANSWER_LANGUAGE
    assert report.languages[lang].short_reply_flips == 0
