"""KD loss = alpha * T^2 * KL(teacher || student at T) + (1 - alpha) * CE(label), checked by hand."""
import math

import numpy as np
import pytest

from edgecv.compress.distill import make_kd_loss, pack_targets


def _loss(labels, teacher, student, T, alpha):
    y = pack_targets(np.array(labels), np.array(teacher, np.float32))
    return make_kd_loss(T, alpha)(y, np.array(student, np.float32)).numpy()


def test_identical_logits_leave_only_cross_entropy():
    # teacher == student -> KL = 0; CE of logits [2, 0] for label 0 = -log(e^2 / (e^2 + 1))
    out = _loss([0], [[2.0, 0.0]], [[2.0, 0.0]], T=3.0, alpha=0.5)
    assert out[0] == pytest.approx(0.5 * math.log(1 + math.exp(-2)), rel=1e-5)


def test_hand_computed_kl_at_temperature():
    # T = 2: teacher [2, 0] -> p = softmax([1, 0]) = [e/(e+1), 1/(e+1)]; student [0, 0] -> q = [0.5, 0.5]
    p = math.e / (math.e + 1)
    kl = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    ce = math.log(2)  # student logits [0, 0], label 1
    out = _loss([1], [[2.0, 0.0]], [[0.0, 0.0]], T=2.0, alpha=0.75)
    assert out[0] == pytest.approx(0.75 * 4 * kl + 0.25 * ce, rel=1e-5)


def test_alpha_one_ignores_labels_and_alpha_zero_ignores_teacher():
    teacher, student = [[1.0, -1.0, 0.5]], [[0.2, 0.1, -0.3]]
    assert _loss([0], teacher, student, 4.0, 1.0) == pytest.approx(_loss([2], teacher, student, 4.0, 1.0))
    assert _loss([2], teacher, student, 4.0, 0.0) == pytest.approx(_loss([2], [[9.0, 0, 0]], student, 4.0, 0.0))
    assert _loss([0], teacher, student, 4.0, 1.0)[0] > 0
