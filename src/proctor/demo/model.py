"""A small text classifier the demo agent trains on the tickets: multinomial naive Bayes.

Its posterior probability is the agent's confidence, which the policy reads as
``context.confidence``.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

_WORD = re.compile(r"[a-zà-ÿ]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class NaiveBayes:
    alpha: float = 1.0
    priors: dict[str, float] = field(default_factory=dict)
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    vocabulary: set[str] = field(default_factory=set)

    def fit(self, texts: list[str], labels: list[str]) -> NaiveBayes:
        per_label: dict[str, Counter[str]] = defaultdict(Counter)
        label_counts = Counter(labels)
        for text, label in zip(texts, labels, strict=True):
            per_label[label].update(words(text))
        self.counts = dict(per_label)
        self.totals = {k: sum(c.values()) for k, c in per_label.items()}
        self.vocabulary = {w for c in per_label.values() for w in c}
        self.priors = {k: math.log(n / len(labels)) for k, n in label_counts.items()}
        return self

    def predict(self, text: str) -> tuple[str, float]:
        """(label, probability of that label)."""
        tokens = [w for w in words(text) if w in self.vocabulary]
        v = len(self.vocabulary)
        scores = {}
        for label, prior in self.priors.items():
            denominator = self.totals[label] + self.alpha * v
            counts = self.counts[label]
            scores[label] = prior + sum(
                math.log((counts[w] + self.alpha) / denominator) for w in tokens
            )
        best = max(scores, key=scores.__getitem__)
        top = scores[best]
        total = sum(math.exp(s - top) for s in scores.values())
        return best, 1.0 / total
