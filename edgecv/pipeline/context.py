"""What every stage can ask for: the recipe, the run directory, the data in each model's
preprocessing, the teacher, and the models earlier stages saved."""
from __future__ import annotations

import json
import shlex
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from edgecv.data import Dataset, PreprocessSpec, load_dataset
from edgecv.data.sampling import balanced_indices
from edgecv.pipeline.rundir import RunDir
from edgecv.resources import BUILTIN, builtin_model_path

FLOAT_MODEL = "model.keras"
QAT_MODEL = "model_qat.h5"  # .h5: only it round-trips tfmot quantizer variables in tf_keras 2.21
TEACHER_META = "teacher.json"
REBUILD_PROBE = 16  # random images a Keras 3 student's tf_keras rebuild is checked on ...
REBUILD_TOLERANCE = 1e-4  # ... and the largest |output difference| accepted (float32 round-off)
TEACHER_CHECK_SAMPLES = 500  # held-out images the teacher is checked on before distilling ...
TEACHER_CHANCE_P = 1e-3  # ... and the p-value (one-sided, vs chance) it must get below
RANGE_PROBE_SAMPLES = 100  # ... of which the teacher is also read in every other input range
MIN_INPUT_SPAN = 0.1  # the least a student's input may span from a black to a white pixel (raw + Rescaling(1/255): 1)
CLASS_ORDER_GAIN = 0.10  # top-1 a one-to-one matching of its outputs must add before the order is blamed
CLASS_ORDER_SHOWN = 30  # classes up to which the class-order message spells out data.classes whole


def run_float_student(run: Path) -> Path | None:
    """A compress run's last float student: the pruned model, else the distilled one (None: neither yet)."""
    return next((f for f in (run / "stages" / stage / FLOAT_MODEL for stage in ("prune", "distill")) if f.is_file()),
                None)


def setting_file_hashes(recipe: dict) -> dict[str, str]:
    """"section.key" -> the sha256 of the file (or SavedModel folder) that recipe setting names, for
    the settings that name one that exists: teacher.path, student.path (a run: its last float
    student), student.weights (a weights file) and profile.devices (every profile YAML, shipped or
    the user's). Part of the --resume keys (RunDir): the same path with other contents is another
    input, so a teacher retrained into the same file reruns the stages that read it."""
    import hashlib

    from edgecv.devices import load_profile
    from edgecv.errors import EdgecvError
    from edgecv.pipeline.exporting import model_sha256
    from edgecv.pipeline.rundir import is_run_dir

    def named_file(given) -> Path | None:
        if not isinstance(given, str) or not given:
            return None
        try:
            path = builtin_model_path(given) or Path(given)
        except EdgecvError:
            return None  # the stage that reads it says what is wrong
        if is_run_dir(path):
            path = run_float_student(path)
        return path if path is not None and path.exists() else None

    def sha256(path) -> str:
        try:
            return model_sha256(path) if path else ""
        except OSError:
            return ""  # unreadable: the stage that reads it says so

    files = {setting: named_file(recipe[section][key]) for setting, (section, key) in
             (("teacher.path", ("teacher", "path")), ("student.path", ("student", "path")),
              ("student.weights", ("student", "weights")))}
    hashes = {setting: digest for setting, path in files.items() if (digest := sha256(path))}
    profiles = []
    for device in recipe["profile"]["devices"]:
        try:
            path = None if device == "host" else load_profile(device).path  # host: this machine, read each run
        except EdgecvError:
            path = None
        profiles.append(f"{device}={sha256(path)}")
    if any(not p.endswith("=") for p in profiles):
        hashes["profile.devices"] = hashlib.sha256("\n".join(profiles).encode()).hexdigest()
    return hashes


def right_in_each_range(classes_of, spec: PreprocessSpec, images: np.ndarray, y: np.ndarray,
                        right_as_given: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per input range, spec's own first: which of `images` (uint8) a model reading them so puts
    right, `classes_of` mapping a float batch to predicted classes. A wrong range is a gross
    difference, so a small class-balanced sample tells (RANGE_PROBE_SAMPLES)."""
    from edgecv.data.preprocess import normalizations_for

    right = {spec.normalization: classes_of(spec.apply(images)) == y if right_as_given is None else right_as_given}
    for name in normalizations_for(spec.channels):
        if name not in right:
            right[name] = classes_of(replace(spec, normalization=name).apply(images)) == y
    return right


def clearly_better_range(right: dict[str, np.ndarray], given: str) -> str | None:
    """The range that puts significantly more images right than `given` (paired McNemar test,
    p < TEACHER_CHANCE_P), or None: a model with its own Rescaling fed [0, 1] can still beat chance."""
    from edgecv.gate.stats import paired_test

    best = max(right, key=lambda name: right[name].sum())
    return best if best != given and paired_test(right[given], right[best]).p_value < TEACHER_CHANCE_P else None


def _check_not_scaled_twice(spec: PreprocessSpec, lifted: list[str]) -> None:
    """Refuse a user's student that scales its own input fed pixels already scaled: keras.applications
    MobileNetV3Small (include_preprocessing=True) read as student.normalization=symmetric saw its
    pixels span 0.016 of [-1, 1], which int8 cannot tell apart (83.5 % float, 66.6 % int8 on the
    shipped sample; 83.0 / 83.1 % as raw)."""
    from edgecv.errors import ModelError

    if not lifted or spec.normalization == "raw":
        return
    span = float(np.max(np.abs(np.diff(spec.apply(np.array([0, 255], np.uint8).reshape(2, 1, 1, 1)), axis=0))))
    if span < MIN_INPUT_SPAN:
        layers = f"layers {', '.join(lifted)} scale" if len(lifted) > 1 else f"layer {lifted[0]} scales"
        raise ModelError(f"the student's own {layers} its input after "
                         f"student.normalization={spec.normalization}, so its pixels span only {span:.3g}, too little "
                         "for an int8 input to tell apart; it takes pixels as they are: add --set "
                         "student.normalization=raw (or auto)")


class RunContext:
    def __init__(self, recipe: dict, run: RunDir, trust_model: bool = False):
        self.recipe = recipe
        self.run = run
        self.seed = int(recipe["seed"])
        self.trust_model = trust_model  # --trust-model: the user's model files may run their code
        self.student_rebuild: dict | None = None  # a Keras 3 student rebuilt in tf_keras: the proof
        self.student_saved_precision: str | None = None  # a student saved in mixed precision: its policy

    @cached_property
    def dataset(self) -> Dataset:
        r = self.recipe
        size = self._user_student_file.input_shape[1] if r["student"]["path"] else r["student"]["input_size"]
        ds = load_dataset(r["data"]["source"], image_size=size, holdout=r["data"]["holdout"], seed=self.seed,
                          classes=r["data"]["classes"])
        limit = r["data"]["max_train_samples"]
        if limit and limit < len(ds.y_train):
            idx = np.sort(balanced_indices(ds.y_train, limit, self.seed))
            ds.train = ds.train.subset(idx)
            ds.notes.append(f"training on a class-balanced subset of {limit} images")
        return ds

    @cached_property
    def student_run(self) -> Path | None:
        """The compress run student.path names, when it names a run directory (a model refreshed from the
        one a run shipped), else None."""
        from edgecv.pipeline.rundir import is_run_dir

        path = self.recipe["student"]["path"]
        return Path(path) if path and is_run_dir(Path(path)) else None

    @cached_property
    def student_file(self) -> str:
        """student.path as a model file: a run directory's last float student."""
        from edgecv.errors import RunDirError

        if self.student_run is None:
            return self.recipe["student"]["path"]
        found = run_float_student(self.student_run)
        if found is None:
            raise RunDirError(f"student.path '{self.student_run}' is a compress run without a float student yet; "
                              f"finish it (edgecv compress -o {self.student_run} --resume) or name a model file")
        return str(found)

    @cached_property
    def _user_student_file(self):
        """The user's student as a tf_keras model: a Keras 3 one is rebuilt layer by layer, and the
        rebuilt model's outputs are checked against the original's."""
        from edgecv.errors import ModelError
        from edgecv.models.loading import compute_in_float32, computing_in_float32, load_model, saved_precision

        path = self.student_file
        loaded = load_model(path, "student", self.trust_model)
        if loaded.framework == "tf_keras":
            # mixed precision: trained and exported in float32
            self.student_saved_precision = saved_precision(compute_in_float32(loaded.model))
            return loaded.model
        if loaded.framework != "keras3":
            raise ModelError(f"student '{path}' is a {loaded.label}: it holds a graph, not layers to fine-tune; "
                             "give the student as a .keras or .h5 file")
        from edgecv.models.keras3_student import max_output_difference, rebuild_in_tf_keras

        rebuilt = rebuild_in_tf_keras(loaded.model)  # in float32, if it was saved in mixed precision
        probe = np.random.default_rng(self.seed).uniform(0, 1, (REBUILD_PROBE, *rebuilt.input_shape[1:]))
        with computing_in_float32(loaded.model) as changed:
            diff = max_output_difference(loaded.model, rebuilt, probe.astype(np.float32))
        self.student_saved_precision = saved_precision(changed)
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
        normalization = s["normalization"]
        if s["path"]:
            user = self.user_student
            h, w, c = user.model.input_shape[1:]
            if self.student_run is not None:  # the input its weights were trained on
                return self._run_student_spec(normalization)
            if normalization == "auto":  # a model that scales its own input as from [0, 255] takes pixels as they are
                from edgecv.models.loading import takes_raw_pixels

                raw = user.input_factor is not None and takes_raw_pixels(user.input_factor)
                normalization = "raw" if raw else "unit"
            spec = PreprocessSpec(h, w, c, normalization, user.channel_scale, user.channel_offset)
            _check_not_scaled_twice(spec, user.lifted)
            return spec
        channels = s["channels"] or self.dataset.image_shape[-1]
        if s["weights"] != "none":
            from edgecv.models.pretrained import PRETRAINED, pretrained_spec

            normalization = PRETRAINED[s["arch"]].normalization if normalization == "auto" else normalization
            return pretrained_spec(s["arch"], s["input_size"], channels, normalization)
        normalization = "unit" if normalization == "auto" else normalization
        return PreprocessSpec(s["input_size"], s["input_size"], channels, normalization)

    def _run_student_spec(self, normalization: str) -> PreprocessSpec:
        """The preprocessing student.path's run trained its student in, as its report records it (a
        scaling layer lifted out of a user's student is in it, not in the saved model); another
        student.normalization than that run's (a recipe's own, say) is refused."""
        from edgecv.errors import RecipeError, RunDirError
        from edgecv.report.loader import read_report

        report = read_report(self.student_run, RunDirError, require=("preprocessing.student",))
        trained = PreprocessSpec.from_dict(report["preprocessing"]["student"])
        if normalization not in ("auto", trained.normalization):
            raise RecipeError(f"student.normalization is {normalization}, but run {self.student_run} trained its "
                              f"student on {trained.normalization} input; set student.normalization=auto (the run's)")
        return trained

    # --- the data, streamed: no split is ever held as float
    def train_input(self, targets: np.ndarray, spec: PreprocessSpec | None = None):
        """The training split as a TrainingInput: x in `spec` (default the student's), y = targets."""
        from edgecv.data.pipeline import StreamingInput

        return StreamingInput(self.dataset.train, spec or self.student_spec, targets)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimizer steps per epoch of `fit`: `batch_size` is per replica (compress/training.py)."""
        from edgecv.compress.training import steps_per_epoch

        return steps_per_epoch(len(self.dataset.train), batch_size)

    def calibration_set(self) -> np.ndarray:
        return self.dataset.train.sample(self.recipe["quantize"]["calibration_samples"], self.seed,
                                         self.student_spec)[0]

    def training_batches(self, n: int, batch_size: int):
        """Up to n class-balanced training images in the student's preprocessing, classes mixed,
        `batch_size` at a time, read as used."""
        return self.dataset.train.sample_batches(n, self.seed, self.student_spec, batch_size)

    def held_out_sample(self, n: int, seed: int, spec: PreprocessSpec | None = None):
        """(images, labels): n class-balanced held-out images, for export checks and the teacher check."""
        return self.dataset.test.sample(n, seed, spec or self.student_spec)

    def held_out_scores(self, predict, spec: PreprocessSpec | None = None, batch_size: int = 256) -> np.ndarray:
        """`predict(float batch)` over the held-out split in order, read and preprocessed a chunk at
        a time the way `edgecv eval` does on a device (numpy + Pillow)."""
        spec = spec or self.student_spec
        chunks = self.dataset.test.chunks((spec.height, spec.width), batch_size)
        return np.concatenate([np.asarray(predict(spec.apply(images))) for _, images in chunks]).astype(np.float32)

    def train_teacher_logits(self) -> np.ndarray:
        """The teacher's logits for every training image, each decoded at the teacher's own input
        size (a cache: the inputs are not augmented, so one pass serves every epoch and stage)."""
        from edgecv.data.pipeline import predict_split

        return predict_split(self.teacher.logits_of, self.dataset.train, self.teacher.spec)

    @cached_property
    def teacher_check(self) -> dict:
        """The teacher's top-1 on a sample of the held-out split, and on part of it in every other input
        range. It stops the run before anything is distilled from it when another range than
        teacher.normalization is clearly right (a model with its own Rescaling layer fed [0, 1] can still
        beat chance), when its outputs are the classes in another order, when it is no better than
        chance, or when it is below teacher.min_top1."""
        from edgecv.errors import ModelError
        from edgecv.gate.stats import binomial_upper_tail

        spec, path = self.teacher.spec, self.teacher.path
        images, y = self.dataset.test.sample_uint8(TEACHER_CHECK_SAMPLES, 2, (spec.height, spec.width))
        given = spec.normalization
        predicted = self.teacher.logits_of(spec.apply(images)).argmax(1)
        correct, n = int(np.sum(predicted == y)), len(y)
        # the other ranges on a class-balanced part of the sample: a ResNet50 at 224 px takes 20 s per
        # range over all of it on 2 cores, and a wrong range is a gross difference
        probe = np.sort(balanced_indices(y, RANGE_PROBE_SAMPLES, 3))
        right = right_in_each_range(lambda x: self.teacher.logits_of(x).argmax(1), spec, images[probe], y[probe],
                                    predicted[probe] == y[probe])
        top1, chance = correct / n, 1.0 / self.dataset.num_classes
        p = binomial_upper_tail(correct, n, chance)
        floor = self.recipe["teacher"]["min_top1"]
        ranges = {name: round(float(r.mean()), 5) for name, r in right.items()}
        chosen = self.teacher.normalization_chosen
        result = {"top1": round(top1, 5), "samples": n, "chance": round(chance, 5), "p_vs_chance": p,
                  "min_top1": floor, "top1_per_input_range": ranges, "input_range_samples": len(probe),
                  "normalization": given, "normalization_chosen": chosen}
        where = f"top-1 {top1:.1%} on {n} held-out images (chance {chance:.1%})"
        best = clearly_better_range(right, given)
        if best:
            raise ModelError(f"teacher '{path}' is read in the wrong input range: top-1 {ranges[given]:.1%} on "
                             f"{len(probe)} held-out images as teacher.normalization={given}"
                             f"{f' (auto: {chosen})' if chosen else ''}, {ranges[best]:.1%} as "
                             f"{best}; add --set teacher.normalization={best}")
        self._check_class_order(predicted, y, where)
        others = ", ".join(f"{name} {ranges[name]:.1%}" for name in right if name != given)
        if p >= TEACHER_CHANCE_P:
            raise ModelError(f"teacher '{path}' is at chance: {where}; distilling it would teach the student "
                             "nothing. Check that it was trained on these classes, in this order (read in the "
                             f"other input ranges, {len(probe)} of the images score no better: {others})")
        if floor is not None and top1 < floor:
            raise ModelError(f"teacher '{path}': {where}, below teacher.min_top1 {floor:.1%}; give a better teacher "
                             "or lower teacher.min_top1")
        return result

    def _check_class_order(self, predicted: np.ndarray, y: np.ndarray, where: str) -> None:
        """Stop when the teacher's outputs are the data's classes in another order: matched one to one
        (the assignment that puts the most images right) it scores CLASS_ORDER_GAIN more, and
        significantly. A folder's classes are numbered by name in sorted order ('10' before '2',
        'bag' before 'coat'), which need not be the order a teacher was trained in."""
        from scipy.optimize import linear_sum_assignment

        from edgecv.errors import ModelError
        from edgecv.gate.stats import paired_test

        names, k = self.dataset.class_names, self.dataset.num_classes
        counts = np.zeros((k, k), np.int64)
        np.add.at(counts, (predicted, y), 1)
        outputs, classes = linear_sum_assignment(-counts)
        class_of = np.empty(k, np.int64)
        class_of[outputs] = classes
        right, matched = predicted == y, class_of[predicted] == y
        if matched.mean() - right.mean() < CLASS_ORDER_GAIN or paired_test(right, matched).p_value >= TEACHER_CHANCE_P:
            return
        moved = [j for j in range(k) if class_of[j] != j]
        pairs = ", ".join(f"output {j} is mostly '{names[class_of[j]]}'" for j in moved[:3])
        if Path(str(self.recipe["data"]["source"])).is_dir():
            order = [names[class_of[j]] for j in range(k)]
            shown = (shlex.quote("data.classes=" + yaml.safe_dump(order, default_flow_style=True, width=10**6).strip())
                     if k <= CLASS_ORDER_SHOWN else f"'data.classes=[{', '.join(order[:3])}, ...]'")
            renamed = ", ".join(f"{j:0{len(str(k - 1))}d}_{order[j]}" for j in range(min(k, 3)))
            numbered = ("data.classes does not list the class folders in the teacher's order" if self.recipe["data"]["classes"]
                        else "a folder's classes are numbered by name in sorted order")
            fix = (f"{numbered}: add --set {shown} (the best match on this sample: check it against the order the "
                   f"teacher was trained in), or rename the class folders so they sort in that order ({renamed}, ...)")
        else:
            fix = "relabel y_train and y_test in the teacher's order"
        raise ModelError(f"teacher '{self.teacher.path}' predicts these classes in another order: {where}, "
                         f"{matched.mean():.1%} with its outputs matched one to one to the classes ({pairs}"
                         f"{', ...' if len(moved) > 3 else ''}); {fix}")

    # --- the teacher: trained by the `teacher` stage, or the user's
    def teacher_path(self) -> str:
        given = self.recipe["teacher"]["path"]
        if not given:
            return str(self.run.stage_dir("teacher") / FLOAT_MODEL)
        builtin = builtin_model_path(given)
        return str(builtin) if builtin else given

    @cached_property
    def teacher(self):
        from edgecv.models.teacher import load_teacher

        normalization = self.recipe["teacher"]["normalization"]
        meta = self.run.stage_dir("teacher") / TEACHER_META
        if not self.recipe["teacher"]["path"] and meta.is_file():
            normalization = json.loads(meta.read_text())["normalization"]
        given = self.recipe["teacher"]["path"]
        edgecvs_own = not given or given.startswith(BUILTIN)  # trained by this run, or shipped with edgecv
        return load_teacher(self.teacher_path(), normalization, self.dataset.image_shape, self.dataset.num_classes,
                            trust=self.trust_model or edgecvs_own)

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
