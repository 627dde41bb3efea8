"""Knowledge distillation loss: alpha * T^2 * KL(teacher || student at T) + (1 - alpha) * CE(label).

Two ways to get the teacher's logits, chosen by compress (pipeline/stages.py):
- cached: computed once per training image and packed with the labels (y = [label, teacher
  logits...]), so distillation, pruning fine-tuning and QAT train with a plain Keras loss and no
  teacher forward pass per step. Only valid when every epoch sees the same, unaugmented images.
- online: the teacher runs forward in the training step on the same (augmented) batch the student
  sees, at its own input size (online_distiller; data/pipeline.py: DistillInput).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgecv.tfcompat import keras, tf


def pack_targets(labels: np.ndarray, teacher_logits: np.ndarray) -> np.ndarray:
    return np.concatenate([labels.reshape(-1, 1).astype(np.float32), teacher_logits.astype(np.float32)], axis=1)


def kd_per_example(soft_labels, teacher_logits, student_logits, temperature: float, alpha: float):
    """The distillation loss of each example; `soft_labels`: one-hot or mixed label vectors."""
    tfm, T, a = tf(), float(temperature), float(alpha)
    p_teacher = tfm.nn.softmax(teacher_logits / T)
    log_p_teacher = tfm.nn.log_softmax(teacher_logits / T)
    log_p_student = tfm.nn.log_softmax(student_logits / T)
    kl = tfm.reduce_sum(p_teacher * (log_p_teacher - log_p_student), axis=-1)
    ce = tfm.nn.softmax_cross_entropy_with_logits(labels=soft_labels, logits=student_logits)
    return a * T * T * kl + (1.0 - a) * ce


def make_kd_loss(temperature: float, alpha: float):
    """A Keras loss over packed targets (cached teacher logits)."""
    tfm = tf()  # resolved here, not inside: AutoGraph cannot trace edgecv.tfcompat.tf

    def kd_loss(y_packed, student_logits):
        labels = tfm.one_hot(tfm.cast(y_packed[:, 0], tfm.int32), tfm.shape(student_logits)[-1])
        return kd_per_example(labels, y_packed[:, 1:], student_logits, temperature, alpha)

    kd_loss.__name__ = "kd_loss"
    return kd_loss


@dataclass(frozen=True)
class OnlineTeacher:
    """What `fit` needs to distil from a teacher run in the training step."""
    logits: Callable  # tensor in the teacher's preprocessing -> logits, traceable in a tf.function
    temperature: float
    alpha: float

    def wrap(self, student):
        return online_distiller(student, self.logits, self.temperature, self.alpha)


def online_distiller(student, teacher_logits, temperature: float, alpha: float):
    """A Keras model that trains `student` on batches of ((student x, teacher x), soft labels),
    running `teacher_logits(teacher x)` (a TensorFlow-traceable function, inference mode) in each
    step. Only the student's variables train; fit returns `.student`. The teacher is held in a
    closure, not as an attribute: Keras tracks neither its variables nor its framework."""
    K, tfm = keras(), tf()

    class OnlineDistiller(K.Model):
        def __init__(self):
            super().__init__(name="online_distiller")
            self.student = student  # a layer of this model: tfmot's pruning callback finds its layers
            self.loss_tracker = K.metrics.Mean(name="loss")

        def call(self, inputs, training=False):
            return self.student(inputs[0] if isinstance(inputs, (tuple, list)) else inputs, training=training)

        @property
        def metrics(self):
            return [self.loss_tracker]

        def train_step(self, data):
            (x_student, x_teacher), soft_labels = data
            targets = tfm.stop_gradient(teacher_logits(x_teacher))
            with tfm.GradientTape() as tape:
                logits = self.student(x_student, training=True)
                loss = tfm.reduce_mean(kd_per_example(soft_labels, targets, logits, temperature, alpha))
                if self.student.losses:
                    loss += tfm.add_n(self.student.losses)
                # gradients are summed over replicas: scale as Keras' compiled loss does
                scaled = loss / tfm.distribute.get_strategy().num_replicas_in_sync
            variables = self.student.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
            self.loss_tracker.update_state(loss)
            return {"loss": self.loss_tracker.result()}

    return OnlineDistiller()
