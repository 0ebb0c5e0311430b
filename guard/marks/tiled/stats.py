"""The null distributions behind the p-values the detector reports.

Pilot correlation. Under "no mark with this key", the folded residual is fixed by the content and the pilot chips are
independent fair ±1 signs drawn from the key, so a correlation score is a weighted Rademacher sum
S = Σ aᵢεᵢ. Normalised by ‖a‖ it obeys, for every content and every x (Bentkus & Dzindzalieta 2015, "A tight
Gaussian bound for weighted sums of Rademacher random variables", Bernoulli 21(2)),

    P(S/‖a‖ ≥ x) ≤ c · P(N(0,1) ≥ x),   c = 1 / (4 P(N(0,1) ≥ √2)) ≈ 3.178,

and also Hoeffding's P ≤ exp(-x²/2); we take the smaller. No Gaussian assumption about the content is needed.
Testing many hypotheses (lattices, flips, shifts) is accounted for by the union (Bonferroni) bound.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr

BENTKUS_C = 1.0 / (4.0 * 0.5 * math.erfc(1.0))  # 1 / (4 P(Z ≥ √2)); P(Z ≥ √2) = erfc(1)/2


def log_rademacher_tail(z: float) -> float:
    """log of an upper bound on P(S/‖a‖ ≥ z) for a weighted sum of independent fair signs (any weights)."""
    if z <= 0:
        return 0.0
    bentkus = math.log(BENTKUS_C) + float(log_ndtr(-z))
    hoeffding = -0.5 * z * z
    return min(0.0, bentkus, hoeffding)


def decoded_p(log_p_single: float, hypotheses: int, log_null_decode: float, listed: int, list_size: int) -> float:
    """p-value of a payload read at a hypothesis whose pilot scored P(z ≥ t) ≤ exp(log_p_single).

    Under the null, a decoded word passes the MAC with probability exp(log_null_decode) whatever the data, so the
    expected number of passing words among those checked at hypotheses scoring ≥ t bounds the chance of reporting
    one (Markov). Each of the `hypotheses` is decoded once (at most); the `listed` strongest are also list-decoded,
    which checks `list_size` words, but only those scoring ≥ t count, and at most hypotheses · P of them do:

        p = exp(log_null_decode) · (N·P + (list_size - 1) · min(listed, N·P))

    With N·P large (a weak pilot) the list adds at most listed·(list_size - 1) words to N·P; with a strong pilot it
    multiplies a p-value that is tiny anyway."""
    log_expected = log_p_single + math.log(max(1, hypotheses))
    log_listed = math.log(max(1, list_size - 1)) + min(math.log(max(1, listed)), log_expected)
    log_p = log_null_decode + float(np.logaddexp(log_expected, log_listed))
    return math.exp(min(0.0, log_p)) if log_p > -745.0 else 5e-324


def bonferroni_p(log_p_single: float, hypotheses: int, log_extra: float = 0.0) -> float:
    """min(1, hypotheses · p_single · exp(log_extra)), computed in logs so tiny values do not underflow to 0."""
    log_p = log_p_single + math.log(max(1, hypotheses)) + log_extra
    return math.exp(min(0.0, log_p)) if log_p > -745.0 else 5e-324
