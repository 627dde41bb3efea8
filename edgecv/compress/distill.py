"""Knowledge distillation loss: alpha * T^2 * KL(teacher || student at T) + (1 - alpha) * CE(label).

Teacher logits are computed once per training image and travel packed with the labels
(y = [label, teacher logits...]), so the same loss serves distillation, pruning fine-tuning and QAT
as a plain Keras loss, with no teacher forward pass per step.
"""
from __future__ import annotations

import numpy as np

from edgecv.tfcompat import tf


def pack_targets(labels: np.ndarray, teacher_logits: np.ndarray) -> np.ndarray:
    return np.concatenate([labels.reshape(-1, 1).astype(np.float32), teacher_logits.astype(np.float32)], axis=1)


def make_kd_loss(temperature: float, alpha: float):
    T = float(temperature)
    a = float(alpha)
    tfm = tf()  # resolved here, not inside: AutoGraph cannot trace edgecv.tfcompat.tf

    def kd_loss(y_packed, student_logits):
        labels = tfm.cast(y_packed[:, 0], tfm.int32)
        teacher_logits = y_packed[:, 1:]
        p_teacher = tfm.nn.softmax(teacher_logits / T)
        log_p_teacher = tfm.nn.log_softmax(teacher_logits / T)
        log_p_student = tfm.nn.log_softmax(student_logits / T)
        kl = tfm.reduce_sum(p_teacher * (log_p_teacher - log_p_student), axis=-1)
        ce = tfm.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=student_logits)
        return a * T * T * kl + (1.0 - a) * ce

    kd_loss.__name__ = "kd_loss"
    return kd_loss
