"""What every stage can ask for: the recipe, the run directory, the data in each model's
preprocessing, the teacher, and the models earlier stages saved."""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np

from edgecv.data import Dataset, PreprocessSpec, load_dataset
from edgecv.data.sampling import balanced_indices
from edgecv.pipeline.rundir import RunDir

FLOAT_MODEL = "model.keras"
QAT_MODEL = "model_qat.h5"  # .h5: only it round-trips tfmot quantizer variables in tf_keras 2.21
TEACHER_META = "teacher.json"
REBUILD_PROBE = 16  # random images a Keras 3 student's tf_keras rebuild is checked on ...
REBUILD_TOLERANCE = 1e-4  # ... and the largest |output difference| accepted (float32 round-off)


class RunContext:
    def __init__(self, recipe: dict, run: RunDir, trust_model: bool = False):
        self.recipe = recipe
        self.run = run
        self.seed = int(recipe["seed"])
        self.trust_model = trust_model  # --trust-model: the user's model files may run their code
        self.student_rebuild: dict | None = None  # a Keras 3 student rebuilt in tf_keras: the proof

    @cached_property
    def dataset(self) -> Dataset:
        r = self.recipe
        size = self._user_student_file.input_shape[1] if r["student"]["path"] else r["student"]["input_size"]
        ds = load_dataset(r["data"]["source"], image_size=size, holdout=r["data"]["holdout"], seed=self.seed)
        limit = r["data"]["max_train_samples"]
        if limit and limit < len(ds.y_train):
            idx = np.sort(balanced_indices(ds.y_train, limit, self.seed))
            ds.x_train, ds.y_train = ds.x_train[idx], ds.y_train[idx]
            ds.notes.append(f"training on a class-balanced subset of {limit} images")
        return ds

    @cached_property
    def _user_student_file(self):
        """The user's student as a tf_keras model: a Keras 3 one is rebuilt layer by layer, and the
        rebuilt model's outputs are checked against the original's."""
        from edgecv.errors import ModelError
        from edgecv.models.loading import load_model

        path = self.recipe["student"]["path"]
        loaded = load_model(path, "student", self.trust_model)
        if loaded.framework == "tf_keras":
            return loaded.model
        if loaded.framework != "keras3":
            raise ModelError(f"student '{path}' is a {loaded.label}: it holds a graph, not layers to fine-tune; "
                             "give the student as a .keras or .h5 file")
        from edgecv.models.keras3_student import max_output_difference, rebuild_in_tf_keras

        rebuilt = rebuild_in_tf_keras(loaded.model)
        probe = np.random.default_rng(self.seed).uniform(0, 1, (REBUILD_PROBE, *rebuilt.input_shape[1:]))
        diff = max_output_difference(loaded.model, rebuilt, probe.astype(np.float32))
        if not diff <= REBUILD_TOLERANCE:
            raise ModelError(f"student '{path}': the tf_keras rebuild of this Keras 3 model differs from it by up to "
                             f"{diff:.3g} (allowed {REBUILD_TOLERANCE:g}); please report the model's layers to edgecv")
        self.student_rebuild = {"from": loaded.label, "max_abs_diff": diff, "probe_images": REBUILD_PROBE}
        return rebuilt

    @cached_property
    def user_student(self):
        """The user's own student (recipe student.path), flattened and with input scaling lifted."""
        from edgecv.models.user_model import prepare_user_model

        return prepare_user_model(self._user_student_file, self.dataset.num_classes,
                                  self.recipe["student"]["batchnorm_momentum"])

    @cached_property
    def student_spec(self) -> PreprocessSpec:
        s = self.recipe["student"]
        if s["path"]:
            user = self.user_student
            h, w, c = user.model.input_shape[1:]
            return PreprocessSpec(h, w, c, s["normalization"], user.channel_scale, user.channel_offset)
        channels = s["channels"] or self.dataset.image_shape[-1]
        return PreprocessSpec(s["input_size"], s["input_size"], channels, s["normalization"])

    @cached_property
    def x_train(self) -> np.ndarray:
        return self.student_spec.apply(self.dataset.x_train)

    @cached_property
    def x_test(self) -> np.ndarray:
        return self.student_spec.apply(self.dataset.x_test)

    def calibration_set(self) -> np.ndarray:
        n = self.recipe["quantize"]["calibration_samples"]
        return self.x_train[balanced_indices(self.dataset.y_train, n, self.seed)]

    # --- the teacher: trained by the `teacher` stage, or the user's
    def teacher_path(self) -> str:
        given = self.recipe["teacher"]["path"]
        return given if given else str(self.run.stage_dir("teacher") / FLOAT_MODEL)

    @cached_property
    def teacher(self):
        from edgecv.models.teacher import load_teacher

        normalization = self.recipe["teacher"]["normalization"]
        meta = self.run.stage_dir("teacher") / TEACHER_META
        if not self.recipe["teacher"]["path"] and meta.is_file():
            normalization = json.loads(meta.read_text())["normalization"]
        return load_teacher(self.teacher_path(), normalization, self.dataset.image_shape, self.dataset.num_classes,
                            trust=self.trust_model or not self.recipe["teacher"]["path"])

    # --- models saved by earlier stages
    def model_path(self, stage: str, name: str = FLOAT_MODEL) -> Path:
        return self.run.stage_dir(stage) / name

    def float_student_stage(self) -> str:
        """The last stage that produced a float student: prune when it ran, else distill."""
        return "prune" if self.run.is_done("prune") else "distill"

    def load_model(self, path: Path):
        """A model an earlier stage saved (edgecv's own, so trusted)."""
        from edgecv.models.loading import load_tf_keras_model

        return load_tf_keras_model(path, trust=True)
