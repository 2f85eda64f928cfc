"""The lexical half of the intent classifier: word and character n-gram TF-IDF + logistic regression
(the sparse half of a sparse + dense classifier, as in Rasa's DIET), added to the head's logits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

LEXICAL_NGRAMS = {"word": (1, 2), "char_wb": (2, 5)}
LEXICAL_C = 20.0
# At most this many weights (labels x n-grams): L-BFGS holds about 200 bytes per weight while it fits,
# so 10M keeps a fit under 2 GB. BANKING77 (3.1M) and CLINC150 (8.8M) alone are below it; both in one
# platform (228 labels, 82k n-grams) keep each analyzer's most frequent n-grams.
LEXICAL_MAX_WEIGHTS = 10_000_000


def _vectorizer(analyzer: str, vocabulary: list[str] | None = None, max_features: int | None = None) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer=analyzer,
        ngram_range=LEXICAL_NGRAMS[analyzer],
        sublinear_tf=True,
        vocabulary=vocabulary,
        max_features=max_features,
        dtype=np.float32,  # as the coefficients: a float64 row would copy them at every call
    )


def _fit_vectorizers(texts: Sequence[str], n_labels: int) -> dict[str, TfidfVectorizer]:
    """Fit one vectorizer per analyzer; refit with a vocabulary cap when the weights would pass the budget."""
    vectorizers = {name: _vectorizer(name).fit(texts) for name in LEXICAL_NGRAMS}
    if n_labels * sum(len(v.vocabulary_) for v in vectorizers.values()) <= LEXICAL_MAX_WEIGHTS:
        return vectorizers
    cap = LEXICAL_MAX_WEIGHTS // n_labels // len(LEXICAL_NGRAMS)
    return {name: _vectorizer(name, max_features=cap).fit(texts) for name in LEXICAL_NGRAMS}


@dataclass
class LexicalModel:
    """Word 1-2-gram and character 2-5-gram TF-IDF + multinomial logistic regression.

    The exact wording (``PIN``, ``SEPA``, ``top-up``) that a sentence embedding blurs. Kept as
    plain arrays (vocabularies, idf, coefficients) so that it is saved with the head's
    safetensors and config, without pickles.
    """

    vocabularies: dict[str, list[str]]
    idf: dict[str, np.ndarray]
    coef: np.ndarray  # (n_labels, total vocabulary)
    intercept: np.ndarray  # (n_labels,)

    @classmethod
    def fit(cls, texts: Sequence[str], y: Sequence[int], n_labels: int) -> LexicalModel | None:
        """Fit on ``texts`` labelled ``y`` in ``range(n_labels)``; None with fewer than two labels."""
        if len(set(y)) < 2:
            return None
        vectorizers = _fit_vectorizers(texts, n_labels)
        x = hstack([v.transform(texts) for v in vectorizers.values()]).tocsr()
        clf = LogisticRegression(max_iter=3000, C=LEXICAL_C).fit(x, y)
        coef, intercept = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2:  # binary: sigmoid(w.x + b) = softmax([0, w.x + b])
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
        # a label without training examples (only in validation) can never win
        full_coef = np.zeros((n_labels, x.shape[1]), dtype=np.float32)
        full_intercept = np.full(n_labels, float(intercept.min()) - 30.0, dtype=np.float32)
        full_coef[clf.classes_], full_intercept[clf.classes_] = coef, intercept
        return cls(
            vocabularies={name: v.get_feature_names_out().tolist() for name, v in vectorizers.items()},
            idf={name: v.idf_.astype(np.float32) for name, v in vectorizers.items()},
            coef=full_coef,
            intercept=full_intercept,
        )

    def __post_init__(self):
        # per vectorizer, its block of the coefficients, transposed and contiguous (fast sparse x dense)
        self._blocks = []
        start = 0
        for name, vocabulary in self.vocabularies.items():
            vectorizer = _vectorizer(name, vocabulary)
            vectorizer.idf_ = self.idf[name]
            block = np.ascontiguousarray(self.coef[:, start : start + len(vocabulary)].T, dtype=np.float32)
            self._blocks.append((vectorizer, block))
            start += len(vocabulary)

    def log_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, n_labels) log-probabilities."""
        z = self.intercept + sum(np.asarray(v.transform(texts) @ block) for v, block in self._blocks)
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def subset(self, rows: Sequence[int]) -> LexicalModel:
        """The model restricted to the labels ``rows`` (probabilities renormalised over them)."""
        return LexicalModel(self.vocabularies, self.idf, self.coef[rows], self.intercept[rows])

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save (see :meth:`from_saved`)."""
        return {
            "lexical_coef": self.coef,
            "lexical_intercept": self.intercept,
            **{f"lexical_idf_{name}": idf for name, idf in self.idf.items()},
        }

    @classmethod
    def from_saved(cls, arrays: dict[str, np.ndarray], vocabularies: dict[str, list[str]]) -> LexicalModel:
        """Rebuild from :meth:`arrays` and :attr:`vocabularies`."""
        return cls(
            vocabularies=vocabularies,
            idf={name: arrays[f"lexical_idf_{name}"] for name in vocabularies},
            coef=arrays["lexical_coef"],
            intercept=arrays["lexical_intercept"],
        )
