"""Paired comparison of two classifiers on the same held-out images.

Both models saw the same images, so what matters is where they disagree: b images the baseline
got right and the candidate wrong, c the other way round. Images both got right (or wrong) say
nothing about a difference, which is why a paired test sees a real 0.5-point drop that two
independent accuracies with overlapping intervals would hide.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar test of "the two models are equally accurate".

    Under that hypothesis each of the b + c discordant images is equally likely to favour
    either model, so p = min(1, 2·P(X ≤ min(b, c))) with X ~ Binomial(b + c, 1/2); p = 1 when
    b + c = 0.
    """
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2 * _binomial_sum(n, range(min(b, c) + 1), 0.5))


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how likely k or more of n right by chance alone."""
    return min(1.0, _binomial_sum(n, range(max(k, 0), n + 1), p)) if k > 0 else 1.0


def _binomial_sum(n: int, ks: range, p: float) -> float:
    """sum of P(X = k) over ks, in log space (lgamma and log-sum-exp): n in the hundreds of
    thousands neither overflows nor underflows."""
    if not ks:
        return 0.0
    log_terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
                 + (n - i) * math.log1p(-p) for i in ks]
    top = max(log_terms)
    return math.exp(top + math.log(math.fsum(math.exp(t - top) for t in log_terms)))


def drop_ci(b: int, c: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wald confidence interval of the paired accuracy drop d = (b − c)/n (a fraction).

    d ± z·sqrt(b + c − (b − c)²/n)/n, z the two-sided normal quantile of `level`: the normal
    approximation to the difference of two correlated proportions (the variance counts only
    discordant images). It is good once b + c is in the tens and collapses to [d, d] when
    b + c = 0, where the exact McNemar p-value is the better guide.
    """
    d = (b - c) / n
    half = NormalDist().inv_cdf(0.5 + level / 2) * paired_standard_error(b, c, n)
    return d - half, d + half


def paired_standard_error(b: int, c: int, n: int) -> float:
    """Standard error of the paired accuracy difference (b − c)/n (a fraction): sqrt(b + c − (b − c)²/n)/n,
    from the discordant images only (see drop_ci)."""
    return math.sqrt(max(0.0, b + c - (b - c) ** 2 / n)) / n if n else 0.0


@dataclass(frozen=True)
class PairedTest:
    """Discordant counts of a paired comparison, with its p-value and interval (fractions)."""

    n: int  # images compared
    b: int  # baseline right, candidate wrong
    c: int  # baseline wrong, candidate right
    p_value: float
    ci: tuple[float, float]  # of the drop, at level 1 − alpha
    baseline_accuracy: float
    candidate_accuracy: float

    @property
    def drop(self) -> float:
        return (self.b - self.c) / self.n

    @property
    def standard_error(self) -> float:
        """Of the drop (a fraction): what the choice of held-out images alone could move it by."""
        return paired_standard_error(self.b, self.c, self.n)


def paired_test(baseline_correct, candidate_correct, alpha: float = 0.05) -> PairedTest:
    """Compare per-image correctness (equal-length boolean arrays) of a baseline and a candidate."""
    base, cand = np.asarray(baseline_correct, bool), np.asarray(candidate_correct, bool)
    n = len(base)
    b, c = int(np.sum(base & ~cand)), int(np.sum(~base & cand))
    return PairedTest(n, b, c, mcnemar_p(b, c), drop_ci(b, c, n, 1 - alpha), float(base.mean()), float(cand.mean()))
