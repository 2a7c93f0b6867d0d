"""Lotse's intent classifier for the engine (Rasa Open Source 3.6, loaded from config.yml).

Rasa's LogisticRegressionClassifier fits raw n-gram counts with a fixed C of 1.0. On our eight
languages that gave flat probabilities over ~25 intents: many in-scope messages ended below the
FallbackClassifier's ambiguity threshold. Here the same sentence features are first weighted with
TF-IDF (sublinear term frequency, L2 norm) and the regression is less regularised (C, default 100).
Measured with `make eval` on nlu_data/heldout/ (see docs/eval/report.md).

Everything else (features, ranking, persistence with skops) is Rasa's own component; only loading
trusts one more type, the sparse matrix in which scikit-learn keeps the IDF weights.
"""

from __future__ import annotations

from typing import Any, Dict, Text

from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.logistic_regression_classifier import LogisticRegressionClassifier
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.pipeline import Pipeline

TRUSTED = ("scipy.sparse._csr.csr_matrix",)
"""Types skops does not trust by default that our pipeline contains (TfidfTransformer's idf diagonal)."""


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class TfidfLogisticRegressionClassifier(LogisticRegressionClassifier):
    """Logistic regression over TF-IDF-weighted sentence features."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        """Rasa's defaults plus the regularisation strength and the term-frequency scaling."""
        return {
            **LogisticRegressionClassifier.get_default_config(),
            "C": 100.0,
            "sublinear_tf": True,
            "max_iter": 3000,
        }

    def __init__(
        self,
        config: Dict[Text, Any],
        name: Text,
        model_storage: ModelStorage,
        resource: Resource,
    ) -> None:
        """Rasa's classifier, wrapped in a pipeline that weights the features first."""
        super().__init__(config, name, model_storage, resource)
        regression = self.clf
        regression.set_params(C=float(self.config["C"]))
        self.clf = Pipeline(
            [
                ("tfidf", TfidfTransformer(sublinear_tf=bool(self.config["sublinear_tf"]))),
                ("regression", regression),
            ]
        )

    @classmethod
    def validate_config(cls, config: Dict[Text, Any]) -> None:
        """C must be a positive number."""
        if float(config.get("C", 100.0)) <= 0:
            raise ValueError(f"{cls.__name__}: C must be positive, got {config.get('C')!r}")

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> "TfidfLogisticRegressionClassifier":
        """Load the trained pipeline; a model that cannot be loaded stops the engine instead of
        answering every message with an untrained classifier (Rasa's fallback for a missing file)."""
        import skops.io as sio

        with model_storage.read_from(resource) as model_dir:
            path = model_dir / f"{resource.name}.skops"
            unknown = sio.get_untrusted_types(file=path)
            unexpected = sorted(set(unknown) - set(TRUSTED))
            if unexpected:
                raise ValueError(f"{path}: refusing to load untrusted types {unexpected}")
            classifier = sio.load(path, trusted=unknown)
        component = cls(config, execution_context.node_name, model_storage, resource)
        component.clf = classifier
        return component
