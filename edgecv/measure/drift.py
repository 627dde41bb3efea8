"""`edgecv drift`: do the images a device sees still look like the data its model was tested on?

A reference, built when the model is shipped (the compress evaluate stage), keeps per-image
statistics of up to a couple of thousand held-out images as the artefact sees them (uint8 pixel
values after resizing, before normalisation) and the artefact's answers on them. Field images go
through the same artefact and the same statistics; each statistic is compared with a population
stability index (the size of the shift) and a two-sample test (whether it is more than sampling
noise), and the field data is checked for the preprocessing mistakes that look like drift.
numpy + scipy + the artefact's runtime: no TensorFlow, this runs on the device.
"""
from __future__ import annotations

import json
import math
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgecv import __version__
from edgecv.data import PreprocessSpec
from edgecv.data.field import UNLABELLED, FieldSet, most_common_size
from edgecv.data.preprocess import adapt_channels, resize_bilinear
from edgecv.data.sampling import balanced_indices
from edgecv.data.sources import ImageSplit, image_headers, labels_by_name
from edgecv.errors import DataError, DriftError
from edgecv.fileio import atomic_path, is_whole, shown
from edgecv.measure.bench import file_sha256
from edgecv.runtime import Runner, load_metadata

REFERENCE_FILE = "drift_reference.npz"
REFERENCE_FORMAT = 1  # bumped when the arrays or the header change meaning
REFERENCE_IMAGES = 2000  # enough for KS and 10-bin PSI to resolve small shifts; ~100 KB stored
INPUT_STATISTICS = ("brightness", "contrast", "sharpness", "saturation")
OUTPUT_STATISTICS = ("confidence", "entropy")
PSI_BINS = 10
PSI_FLOOR = 1e-4  # a bin empty on one side would make the index infinite; this caps its term
LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
SOFTMAX_TOLERANCE = 0.02  # rows summing to 1 within this are probabilities already (int8 outputs round)
# The mismatch checks compare mean pixel values 0..255 per channel; below this gap the readings (as
# given, or swapped / inverted) are too close to tell apart.
CHANNEL_GAP = 5.0
WILSON_LEVEL = 0.95
STATUSES = ("ok", "warn", "alert")
THUMBNAIL = 8  # the embedding's input: an 8x8 grey thumbnail, area-averaged from the model's view
EMBEDDING_DIMS = 8  # principal components of the reference's thumbnails kept (~0.1 KB per 4 images)
MMD_PERMUTATIONS = 500  # smallest p 1/501: still below alpha after Holm and the 2-test Bonferroni
MMD_SAMPLE = 500  # images per side in the kernel test: a 1000x1000 kernel, well under a second on a Pi


@dataclass(frozen=True)
class Thresholds:
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    alpha: float = 0.01  # after the Holm correction across the family of tests

    def check(self) -> "Thresholds":
        if not 0 < self.psi_warn < self.psi_alert:
            raise DriftError(f"--psi-warn ({self.psi_warn:g}) must be above 0 and below --psi-alert "
                             f"({self.psi_alert:g}); the usual pair is 0.1 and 0.25")
        if not 0 < self.alpha < 1:
            raise DriftError(f"--alpha must lie between 0 and 1, got {self.alpha:g}; the usual level is 0.01")
        return self


@dataclass
class Observation:
    """Per-image statistics of a set of images and the artefact's answers on them (float32, one row each)."""

    statistics: dict[str, np.ndarray]  # INPUT_STATISTICS + OUTPUT_STATISTICS
    channel_means: np.ndarray  # (n, C): tells RGB from BGR
    predicted: np.ndarray  # (n,) class index
    labels: np.ndarray  # (n,) class index, UNLABELLED where unknown
    thumbnails: np.ndarray | None = None  # (n, THUMBNAIL**2) as observed; a loaded reference keeps only projections

    def __len__(self) -> int:
        return len(self.predicted)

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool(np.all(self.labels != UNLABELLED))


@dataclass
class Embedding:
    """PCA of the reference's thumbnails: what the images look like beyond their summary statistics
    (a flipped or rotated scene keeps its brightness and contrast, not its layout)."""

    mean: np.ndarray  # (THUMBNAIL**2,)
    basis: np.ndarray  # (k, THUMBNAIL**2), unit rows
    explained: np.ndarray  # (k,) share of the thumbnails' variance each component holds
    reference: np.ndarray  # (n, k) the reference images' coordinates

    def project(self, thumbnails: np.ndarray) -> np.ndarray:
        return ((thumbnails - self.mean) @ self.basis.T).astype(np.float32)


def fit_embedding(thumbnails: np.ndarray, dims: int = EMBEDDING_DIMS) -> Embedding:
    x = np.asarray(thumbnails, np.float64)
    mean = x.mean(0)
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    k = min(dims, len(singular))
    variance = singular ** 2
    explained = variance[:k] / variance.sum() if variance.sum() > 0 else np.zeros(k)
    basis = vt[:k].astype(np.float32)
    emb = Embedding(mean.astype(np.float32), basis, explained.astype(np.float32), np.zeros((len(x), k), np.float32))
    emb.reference = emb.project(x.astype(np.float32))
    return emb


@dataclass
class Reference:
    header: dict  # artefact, artefact_sha256, preprocessing, class_names, images, source, original_size, ...
    observation: Observation
    embedding: Embedding | None = None  # None: a reference written before edgecv stored one

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.header["preprocessing"])


# --- statistics -------------------------------------------------------------------------------------

def model_view(images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Pixel values (float32, N x height x width x channels) as the artefact receives them before
    normalisation: the channels and size PreprocessSpec.apply gives, values as they were given."""
    x = adapt_channels(np.asarray(images, np.float32), spec.channels)
    return resize_bilinear(x, spec.height, spec.width)


def image_statistics(view: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({brightness, contrast, sharpness, saturation}: (n,) each, channel means (n, C)) of model_view images."""
    grey = (adapt_channels(view, 1) if view.shape[-1] == 3 else view)[..., 0]
    lap = sum(LAPLACIAN[i, j] * grey[:, i : grey.shape[1] - 2 + i, j : grey.shape[2] - 2 + j]
              for i in range(3) for j in range(3) if LAPLACIAN[i, j])
    if view.shape[-1] == 3:  # HSV saturation: how far the channels spread, relative to the brightest
        top, bottom = view.max(-1), view.min(-1)
        saturation = np.where(top > 0, (top - bottom) / np.where(top > 0, top, 1), 0).mean((1, 2))
    else:
        saturation = np.zeros(len(view))
    stats = {"brightness": grey.mean((1, 2)), "contrast": grey.std((1, 2)),
             "sharpness": lap.var((1, 2)) if grey.shape[1] > 2 and grey.shape[2] > 2 else np.zeros(len(view)),
             "saturation": saturation}
    return {k: v.astype(np.float32) for k, v in stats.items()}, view.mean((1, 2)).astype(np.float32)


def thumbnails(view: np.ndarray) -> np.ndarray:
    """(n, THUMBNAIL**2) grey thumbnails of model_view images: resized to 4x the thumbnail, then
    averaged over 4x4 blocks (a plain bilinear shrink would alias)."""
    grey = adapt_channels(view, 1) if view.shape[-1] == 3 else view
    side = 4 * THUMBNAIL
    small = resize_bilinear(grey, side, side)[..., 0]
    return small.reshape(len(view), THUMBNAIL, 4, THUMBNAIL, 4).mean((2, 4)).reshape(len(view), -1).astype(np.float32)


def probabilities(scores: np.ndarray, outputs: str | None = None) -> np.ndarray:
    """The scores as class probabilities: as they are when rows already sum to 1, p / sum(p) for one
    sigmoid per class (`outputs`, the artefact's metadata), else softmax (logits)."""
    scores = np.asarray(scores, np.float64)
    if outputs == "sigmoids":
        return scores / np.maximum(scores.sum(1, keepdims=True), 1e-12)
    if np.all(scores >= 0) and np.allclose(scores.sum(1), 1.0, atol=SOFTMAX_TOLERANCE):
        return scores / scores.sum(1, keepdims=True)
    shifted = np.exp(scores - scores.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def output_statistics(scores: np.ndarray, outputs: str | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({confidence: max probability, entropy: nats}, predicted class) per image; `outputs`: the
    artefact's kind of scores (`probabilities`)."""
    p = probabilities(scores, outputs)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1)
    return {"confidence": p.max(1).astype(np.float32), "entropy": entropy.astype(np.float32)}, p.argmax(1)


def observe(runner: Runner, spec: PreprocessSpec, batches, *, scores: np.ndarray | None = None,
            progress=lambda n: None) -> Observation:
    """Statistics of `batches` ((indices, images) as ImageSplit.chunks yields) and the runner's answers;
    `scores`: the answers already computed for those indices (the runner is not run again)."""
    parts: dict[str, list] = {"channel_means": [], "predicted": []}
    for idx, images in batches:
        view = model_view(images, spec)
        stats, means = image_statistics(view)
        answers = scores[idx] if scores is not None else runner.class_scores(spec.apply(view))
        outputs, predicted = output_statistics(answers, runner.outputs)
        for name, values in {**stats, **outputs, "channel_means": means, "predicted": predicted,
                             "thumbnails": thumbnails(view)}.items():
            parts.setdefault(name, []).append(values)
        progress(len(images))
    if not parts["predicted"]:
        raise DataError("no images to observe; give at least one image")
    joined = {k: np.concatenate(v) for k, v in parts.items()}
    return Observation({k: joined[k] for k in INPUT_STATISTICS + OUTPUT_STATISTICS}, joined["channel_means"],
                       joined["predicted"].astype(np.int64), np.full(len(joined["predicted"]), UNLABELLED, np.int64),
                       joined["thumbnails"])


def observe_field(runner: Runner, spec: PreprocessSpec, field_set: FieldSet, class_names: list[str],
                  progress=lambda n: None) -> Observation:
    """The field images through the artefact, labels mapped onto the artefact's classes."""
    obs = observe(runner, spec, field_set.images.chunks((spec.height, spec.width)), progress=progress)
    if field_set.labelled:
        obs.labels = labels_by_name(field_set.class_names, field_set.images.labels, class_names, field_set.source)
    return obs


# --- the reference ----------------------------------------------------------------------------------

def build_reference(artefact, split: ImageSplit, runner: Runner, *, source: str, max_images: int = REFERENCE_IMAGES,
                    seed: int = 0, scores: np.ndarray | None = None, progress=lambda n: None) -> Reference:
    """Up to `max_images` class-balanced images of a labelled held-out `split` through `artefact`.
    `scores`: the artefact's scores on the whole split, in order, where the caller has them already."""
    artefact = Path(artefact)
    meta = load_metadata(artefact, runner)
    spec = PreprocessSpec.from_dict(meta["preprocessing"])
    chosen = np.sort(balanced_indices(split.labels, min(max_images, len(split)), seed))  # read files forwards
    sample = split.subset(chosen)
    obs = observe(runner, spec, sample.chunks((spec.height, spec.width)), progress=progress,
                  scores=None if scores is None else np.asarray(scores)[chosen])
    obs.labels = sample.labels.astype(np.int64)
    original = (tuple(sample.array.shape[1:3]) if sample.array is not None
                else most_common_size(size for _, size, _ in image_headers(sample.files)))
    header = {"format": REFERENCE_FORMAT, "edgecv": __version__,
              "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "artefact": artefact.name, "artefact_sha256": file_sha256(artefact),
              "preprocessing": spec.to_dict(), "class_names": meta.get("class_names") or [],
              "images": len(obs), "source": source, "original_size": list(original) if original else None,
              "seed": seed, "embedding": f"PCA of {THUMBNAIL}x{THUMBNAIL} grey thumbnails, {EMBEDDING_DIMS} components"}
    return Reference(header, obs, fit_embedding(obs.thumbnails))


def save_reference(path, reference: Reference) -> None:
    """One .npz: the arrays and a JSON header, written atomically (a reader never sees half of it)."""
    obs = reference.observation
    arrays = {f"stat_{k}": v.astype(np.float32) for k, v in obs.statistics.items()}
    arrays.update(channel_means=obs.channel_means.astype(np.float32), predicted=obs.predicted.astype(np.int16),
                  labels=obs.labels.astype(np.int16), header=np.array(json.dumps(reference.header)))
    if reference.embedding is not None:
        emb = reference.embedding
        arrays.update(embedding_mean=emb.mean, embedding_basis=emb.basis, embedding_explained=emb.explained,
                      embedding=emb.reference)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: savez would append .npz to the name
        np.savez_compressed(f, **arrays)


def check_reference_out(out: Path, inputs: dict[str, Path]) -> None:
    """Refuse an --out that would write over anything but a drift reference before any work: one of
    the command's `inputs` ({what: path}), or an existing file of another kind (a model, a profile)."""
    from edgecv.errors import OutputError

    if out.suffix.lower() != ".npz":
        raise OutputError(f"--out {out}: a drift reference is an .npz file; give a name such as {REFERENCE_FILE}")
    for what, given in inputs.items():
        if out.exists() and Path(given).exists() and out.resolve() == Path(given).resolve():
            raise OutputError(f"--out {out} is the {what} itself; give the reference another file name")
    if out.is_file() and not _is_reference(out):
        raise OutputError(f"--out {out} is a file that is not a drift reference, which edgecv does not write over; "
                          "give another file name")


def _is_reference(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return "header.npy" in z.namelist()


def load_reference(path) -> Reference:
    path = Path(path)
    rebuild = "rebuild it with `edgecv compress` (its evaluate stage writes it) or pass the right file"
    if not path.is_file():
        raise DriftError(f"drift reference {path} not found; pass a compress run directory or its "
                         f"stages/evaluate/{REFERENCE_FILE}")
    if not zipfile.is_zipfile(path):  # numpy would try it as a pickle and talk of allow_pickle
        raise DriftError(f"{path} is not a drift reference (not an .npz archive); {rebuild}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "header" not in z.files:
                raise DriftError(f"{path} is not a drift reference (it has no header); {rebuild}")
            header = json.loads(str(z["header"]))
            # references written before the embedding have none of its arrays; one that has some has all
            has_embedding = any(k.startswith("embedding") for k in z.files)
            wanted = [k for k in _ARRAY_DIMS if has_embedding or not k.startswith("embedding")]
            missing = next((k for k in wanted if k not in z.files), None)
            if missing:
                raise DriftError(f"{path} is malformed: it has no {missing} array; {rebuild}")
            got = {k: z[k] for k in wanted}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DriftError(f"{path} is not a readable drift reference ({type(e).__name__}: {e}); {rebuild}") from None
    kinds = {k: (np.integer, "class numbers") if k in ("predicted", "labels") else (np.number, "numbers") for k in got}
    odd = next((k for k, a in got.items() if a.ndim != _ARRAY_DIMS[k] or not np.issubdtype(a.dtype, kinds[k][0])), None)
    if odd:
        raise DriftError(f"{path} is malformed: its {odd} array is {got[odd].dtype} shaped {got[odd].shape}, not "
                         f"{_ARRAY_DIMS[odd]}-dimensional {kinds[odd][1]}; {rebuild}")
    obs = Observation({k: got[f"stat_{k}"].astype(np.float32) for k in INPUT_STATISTICS + OUTPUT_STATISTICS},
                      got["channel_means"].astype(np.float32), got["predicted"].astype(np.int64),
                      got["labels"].astype(np.int64))
    embedding = (Embedding(*(got[k].astype(np.float32) for k in ("embedding_mean", "embedding_basis",
                                                                  "embedding_explained", "embedding")))
                 if "embedding_basis" in got else None)
    if not isinstance(header, dict) or header.get("format") != REFERENCE_FORMAT:
        found = shown(header.get("format") if isinstance(header, dict) else header)
        raise DriftError(f"{path} is a drift reference of another format ({found}, this edgecv reads "
                         f"{REFERENCE_FORMAT}); {rebuild}")
    problem = _header_problem(header)
    if problem:
        raise DriftError(f"{path} is malformed: {problem}; {rebuild}")
    rows = {len(v) for v in (*obs.statistics.values(), obs.channel_means, obs.predicted, obs.labels,
                             *([] if embedding is None else [embedding.reference]))}
    if rows != {header["images"]}:  # a whole number >= 1 (_header_problem)
        raise DriftError(f"{path} is malformed: its arrays do not all hold the {header.get('images')} images its "
                         f"header names; {rebuild}")
    try:
        PreprocessSpec.from_dict(header["preprocessing"])
    except (KeyError, TypeError, ValueError, DataError) as e:
        raise DriftError(f"{path} is malformed: no usable preprocessing ({e}); {rebuild}") from None
    names = header.get("class_names") or []
    for what, classes in (("predictions", obs.predicted), ("labels", obs.labels)):
        past = classes[(classes < 0) | (classes >= len(names))] if names else classes[classes < 0]
        if len(past):
            raise DriftError(f"{path} is malformed: it records {what} of class {int(past[0])} but names "
                             f"{len(names)} classes; {rebuild}")
    arrays = [*obs.statistics.values(), obs.channel_means]
    if embedding is not None:
        arrays += [embedding.mean, embedding.basis, embedding.explained, embedding.reference]
    if not all(np.isfinite(a).all() for a in arrays):  # read as a shift: a NaN statistic tested as drift
        raise DriftError(f"{path} is malformed: it holds NaN or infinite statistics; {rebuild}")
    if embedding is not None and (embedding.basis.shape[1:] != (THUMBNAIL ** 2,) or embedding.mean.shape != (THUMBNAIL ** 2,)
                                  or embedding.reference.shape[1:] != embedding.basis.shape[:1]
                                  or embedding.explained.shape != embedding.basis.shape[:1]):
        raise DriftError(f"{path} is malformed: its embedding arrays do not fit together; {rebuild}")
    return Reference(header, obs, embedding)


# the arrays of a reference and how many dimensions each has (per image: a row, or a row of values)
_ARRAY_DIMS = {**{f"stat_{k}": 1 for k in INPUT_STATISTICS + OUTPUT_STATISTICS}, "channel_means": 2, "predicted": 1,
               "labels": 1, "embedding_mean": 1, "embedding_basis": 2, "embedding_explained": 1, "embedding": 2}


def _header_problem(header: dict) -> str | None:
    """What in a reference's header the drift check reads and cannot use, or None (a hand-edited or
    damaged header ended in a TypeError)."""
    def whole(v) -> bool:
        return is_whole(v) and v >= 1

    text = next((k for k in ("artefact", "artefact_sha256", "source") if not isinstance(header.get(k), str)), None)
    if text:
        return f"its header's {text} is {shown(header.get(text))}, not text"
    if not whole(header.get("images")):
        return f"its header's images is {shown(header.get('images'))}, not a whole number above 0"
    names, size = header.get("class_names", []), header.get("original_size")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        return f"its header's class_names is {shown(names)}, not a list of names"
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(map(whole, size))):
        return f"its header's original_size is {shown(size)}, not [height, width] in pixels"
    return None


# --- the tests --------------------------------------------------------------------------------------

def psi_from_proportions(reference: np.ndarray, field_: np.ndarray) -> float:
    """Population stability index sum((f - r) ln(f / r)) over bins; empty bins floored at PSI_FLOOR."""
    r, f = np.maximum(reference, PSI_FLOOR), np.maximum(field_, PSI_FLOOR)
    return float(np.sum((f - r) * np.log(f / r)))


def psi(reference: np.ndarray, field_: np.ndarray, bins: int = PSI_BINS) -> float:
    """PSI of a continuous statistic over `bins` bins cut at the reference's quantiles (equal-mass
    bins; tied quantiles, as in a statistic that is often 0, merge)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = [np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1) / len(v)
              for v in (reference, field_)]
    return psi_from_proportions(*counts)


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values: a family of tests at level alpha wrongly flags any of them with
    probability at most alpha, whatever their dependence."""
    p = np.asarray(p_values, np.float64)
    adjusted, running = np.empty_like(p), 0.0
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))  # step-down: never below an earlier one
        adjusted[i] = running
    return adjusted


def ks_p(reference: np.ndarray, field_: np.ndarray) -> float:
    from scipy.stats import ks_2samp

    return float(ks_2samp(reference, field_).pvalue)


def mmd_test(reference: np.ndarray, field_: np.ndarray, *, permutations: int = MMD_PERMUTATIONS,
             sample: int = MMD_SAMPLE, seed: int = 0) -> tuple[float, float]:
    """(MMD², permutation p) between two point sets, Gaussian kernel with the median-distance bandwidth.
    Sees a change in the joint layout of all axes that per-axis tests miss. Each side is subsampled to
    `sample` points (seeded, so a rerun gives the same p); p = (1 + #permuted ≥ observed) / (1 + permutations)."""
    rng = np.random.default_rng(seed)
    x = reference[rng.permutation(len(reference))[:sample]].astype(np.float64)
    y = field_[rng.permutation(len(field_))[:sample]].astype(np.float64)
    points = np.concatenate([x, y])
    squared = np.sum(points ** 2, axis=1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2 * points @ points.T, 0.0)
    bandwidth = float(np.median(distances[np.triu_indices(len(points), 1)])) or 1.0
    kernel = np.exp(-distances / bandwidth)
    # MMD² (biased V-statistic) = wᵀKw with w = +1/n on one side, -1/m on the other; a column per permutation
    n, m = len(x), len(y)
    signs = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    columns = np.stack([signs] + [rng.permutation(signs) for _ in range(permutations)], axis=1)
    statistics = np.sum(columns * (kernel @ columns), axis=0)
    observed = float(statistics[0])
    return observed, float((1 + np.sum(statistics[1:] >= observed)) / (1 + permutations))


def class_shift(reference_predicted: np.ndarray, field_predicted: np.ndarray, classes: int) -> tuple[float, float]:
    """(PSI, chi-square p) of the predicted-class mix; classes neither side predicts are left out
    (their expected count would be 0)."""
    from scipy.stats import chi2_contingency

    counts = np.stack([np.bincount(reference_predicted, minlength=classes),
                       np.bincount(field_predicted, minlength=classes)])
    index = psi_from_proportions(*(counts / counts.sum(1, keepdims=True)))
    seen = counts[:, counts.sum(0) > 0]
    p = 1.0 if seen.shape[1] < 2 else float(chi2_contingency(seen, correction=False).pvalue)
    return index, p


def wilson_interval(correct: int, n: int, level: float = WILSON_LEVEL) -> tuple[float, float]:
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    p, denominator = correct / n, 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def grade(index: float, p_adjusted: float, thresholds: Thresholds) -> str:
    """alert: a shift at least psi_alert that is not sampling noise (p < alpha after Holm); warn: a
    significant shift at least psi_warn, or a large one too few images confirm. Requiring both keeps
    false alarms rare: a small field sample inflates PSI, a large one makes trivial shifts significant."""
    significant = p_adjusted < thresholds.alpha
    if index >= thresholds.psi_alert and significant:
        return "alert"
    if index >= thresholds.psi_warn and (significant or index >= thresholds.psi_alert):
        return "warn"
    return "ok"


@dataclass
class Finding:
    check: str
    status: str  # ok | warn | alert
    reference: str = ""
    field: str = ""
    psi: float | None = None
    p_holm: float | None = None
    detail: str = ""
    method: str = ""


@dataclass
class DriftResult:
    findings: list[Finding]
    reference: dict  # the reference's header
    field_source: str
    field_images: int
    thresholds: Thresholds
    notes: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return any(f.status == "alert" for f in self.findings)

    def to_dict(self) -> dict:
        return {"drift": self.drift, "thresholds": asdict(self.thresholds),
                "reference": {k: self.reference.get(k) for k in ("artefact", "artefact_sha256", "source", "images",
                                                                  "created_at")},
                "field": {"source": self.field_source, "images": self.field_images},
                "findings": [asdict(f) for f in self.findings], "notes": self.notes}


def compare(reference: Reference, field_obs: Observation, field_set: FieldSet, thresholds: Thresholds) -> DriftResult:
    """Every statistic tested, the preprocessing mismatch checks, and accuracy where both sides have labels."""
    ref, spec = reference.observation, reference.spec
    names = [n for n in INPUT_STATISTICS if n != "saturation" or spec.channels == 3] + ["confidence"]
    indices = [psi(ref.statistics[n], field_obs.statistics[n]) for n in names]
    p_values = [ks_p(ref.statistics[n], field_obs.statistics[n]) for n in names]
    classes = max(len(reference.header.get("class_names") or []), int(ref.predicted.max()) + 1,
                  int(field_obs.predicted.max()) + 1)  # the artefact's classes, or what it was seen to predict
    class_index, class_p = class_shift(ref.predicted, field_obs.predicted, classes)
    layout = _embedding_shift(reference.embedding, field_obs)
    family = p_values + [class_p] + ([layout["p_family"]] if layout else [])
    adjusted = holm(family)  # one family: any false alarm among them at most alpha
    findings = []
    for name, index, p, p_adj in zip(names, indices, p_values, adjusted):
        r, f = ref.statistics[name], field_obs.statistics[name]
        findings.append(Finding(name, grade(index, p_adj, thresholds), _median(r), _median(f), float(index),
                                float(p_adj), f"median {_median(r)} → {_median(f)} ({_change(r, f)}); "
                                f"PSI {index:.3f}, KS p {p:.2g} (Holm {p_adj:.2g})",
                                "PSI over 10 reference-quantile bins; two-sample Kolmogorov-Smirnov, Holm-corrected"))
    findings.append(_class_finding(reference, field_obs, classes, (class_index, class_p, adjusted[len(names)]),
                                   thresholds))
    if layout:
        findings.append(_embedding_finding(reference.embedding, layout, float(adjusted[-1]), thresholds))
    findings += _mismatch_findings(reference, field_obs, field_set)
    if field_obs.labelled and ref.labelled:
        findings.append(_accuracy_finding(ref, field_obs))
    notes = [] if layout or field_obs.thumbnails is None else [
        "the reference holds no image embedding (made before edgecv stored one): layout changes such as flips "
        "and rotations show only through the model's answers; a reference edgecv compress writes now holds one"]
    if len(field_obs) < 100:
        notes.append(f"only {len(field_obs)} field images: only large shifts can be told from sampling noise; "
                     "capture a few hundred")
    return DriftResult(findings, reference.header, field_set.source, len(field_obs), thresholds, notes)


def _median(values: np.ndarray) -> str:
    return f"{float(np.median(values)):.4g}"


def _change(reference: np.ndarray, field_: np.ndarray) -> str:
    r, f = float(np.median(reference)), float(np.median(field_))
    return f"×{f / r:.2f}" if r else f"{f - r:+.3g}"


def _class_finding(reference: Reference, field_obs: Observation, classes: int, tested: tuple[float, float, float],
                   thresholds: Thresholds) -> Finding:
    """tested: (PSI, chi-square p, its Holm-adjusted p)."""
    (index, p, p_adj), names = tested, reference.header.get("class_names") or []
    r = np.bincount(reference.observation.predicted, minlength=classes) / len(reference.observation)
    f = np.bincount(field_obs.predicted, minlength=classes) / len(field_obs)
    moved = int(np.argmax(np.abs(f - r)))
    label = names[moved] if moved < len(names) else str(moved)
    return Finding("predicted class", grade(index, p_adj, thresholds), f"{r[moved]:.1%} {label}", f"{f[moved]:.1%} {label}",
                   float(index), float(p_adj), f"largest change: '{label}' predicted for {r[moved]:.1%} → "
                   f"{f[moved]:.1%} of images; PSI {index:.3f}, chi-square p {p:.2g} (Holm {p_adj:.2g})",
                   "PSI over classes; chi-square test of the two predicted-class counts, Holm-corrected")


def _embedding_shift(embedding: Embedding | None, field_obs: Observation) -> dict | None:
    """The field's thumbnails on the reference's PCA axes against the reference's: per-axis PSI and KS
    (the axis with the largest PSI is the effect size) and an MMD test on all axes together. The family's
    p is Bonferroni over the two tests: the smallest KS p times the axes, and the MMD p. None without an
    embedding."""
    if embedding is None or field_obs.thumbnails is None:
        return None
    field_coords = embedding.project(field_obs.thumbnails)
    k = embedding.basis.shape[0]
    indices = [psi(embedding.reference[:, j], field_coords[:, j]) for j in range(k)]
    p_values = [ks_p(embedding.reference[:, j], field_coords[:, j]) for j in range(k)]
    worst = int(np.argmax(indices))
    p_ks = min(1.0, k * min(p_values))
    mmd, p_mmd = mmd_test(embedding.reference, field_coords)
    return {"component": worst, "psi": float(indices[worst]), "p_component": float(p_values[worst]),
            "p_ks": p_ks, "mmd": mmd, "p_mmd": p_mmd, "p_family": min(1.0, 2 * min(p_ks, p_mmd))}


def _embedding_finding(embedding: Embedding, layout: dict, p_adj: float, thresholds: Thresholds) -> Finding:
    component, index, k = layout["component"], layout["psi"], embedding.basis.shape[0]
    share = float(embedding.explained[component])
    status = grade(index, p_adj, thresholds)
    if status == "ok" and p_adj < thresholds.alpha and layout["p_mmd"] <= layout["p_ks"]:
        status = "warn"  # the axes moved together, no single one far: real, but PSI cannot size it
    return Finding("image layout (embedding)", status, f"component {component + 1}",
                   f"PSI {index:.3f}", index, p_adj,
                   f"largest shift on principal component {component + 1} of {k} ({share:.0%} of the thumbnails' "
                   f"variance): PSI {index:.3f}, KS p {layout['p_component']:.2g}; smallest KS p x {k} axes "
                   f"{layout['p_ks']:.2g}; MMD² {layout['mmd']:.3g} on all {k} axes, permutation p "
                   f"{layout['p_mmd']:.2g} (Holm {p_adj:.2g})",
                   f"field {THUMBNAIL}x{THUMBNAIL} grey thumbnails on the reference's {k} principal axes; PSI and "
                   "two-sample Kolmogorov-Smirnov per axis (Bonferroni over axes) and a Gaussian-kernel MMD "
                   f"with {MMD_PERMUTATIONS} permutations on all axes; the smaller p of the two, doubled, joins "
                   "Holm with the other tests")


def _accuracy_finding(ref: Observation, field_obs: Observation) -> Finding:
    """Field top-1 against the reference's held-out top-1, each with a Wilson interval: alert when
    the field interval lies wholly below the reference's, warn when its estimate does."""
    counts = [(int(np.sum(o.predicted == o.labels)), len(o)) for o in (ref, field_obs)]
    (r_lo, r_hi), (f_lo, f_hi) = (wilson_interval(*c) for c in counts)
    r_top1, f_top1 = (k / n for k, n in counts)
    status = "alert" if f_hi < r_lo else "warn" if f_top1 < r_lo else "ok"
    return Finding("accuracy (labelled)", status, f"{r_top1:.1%}", f"{f_top1:.1%}", None, None,
                   f"top-1 {r_top1:.1%} [{r_lo:.1%}, {r_hi:.1%}] held out → {f_top1:.1%} [{f_lo:.1%}, {f_hi:.1%}] "
                   f"on {counts[1][1]} labelled field images",
                   f"top-1 with {WILSON_LEVEL:.0%} Wilson intervals; alert when they do not overlap")


def _mismatch_findings(reference: Reference, field_obs: Observation, field_set: FieldSet) -> list[Finding]:
    """The preprocessing mistakes that look like drift, each named with its likely cause."""
    ref, found = reference.observation, []
    norm = reference.spec.normalization
    r_bright = float(np.mean(ref.statistics["brightness"]))
    r_means, f_means = ref.channel_means.mean(0), field_obs.channel_means.mean(0)
    gap = lambda a, b: float(np.abs(a - b).max()) if a.shape == b.shape else math.inf  # noqa: E731
    if field_set.unit_scaled and r_bright > 1.0:
        found.append(Finding("input scale", "alert", "pixels 0..255", "floats in [0, 1]", detail=(
            f"inputs look scaled to [0, 1]; the model expects raw pixels 0..255 and applies its own normalisation "
            f"('{norm}'): capture the camera's uint8 pixels, before any division by 255"),
            method=f"field .npz float values all within [0, 1]; reference mean brightness {r_bright:.1f}"))
    elif gap(f_means, r_means) > CHANNEL_GAP and gap(f_means, 255 - r_means) < gap(f_means, r_means) / 4:
        found.append(Finding("inverted pixels", "alert", _channels(r_means), _channels(f_means), detail=(
            "the field's channel means are about 255 minus the reference's: the pixels look inverted (255 − x); "
            "check the camera's or the capture's colour mapping"),
            method="mean of each channel against the reference's and its inverse"))
    if reference.spec.channels == 3 and field_obs.channel_means.shape[-1] == 3:
        direct, swapped = gap(f_means, r_means), gap(f_means[::-1], r_means)
        if direct > CHANNEL_GAP and swapped < direct / 2:
            found.append(Finding("channel order", "alert", _channels(r_means), _channels(f_means), detail=(
                "BGR given where the model takes RGB: the field channel means match the reference's only with the "
                "channel order reversed; convert (e.g. OpenCV's cv2.cvtColor(img, cv2.COLOR_BGR2RGB)) before inference"),
                method="mean of each channel against the reference's, as given and reversed"))
    r_size, f_size = reference.header.get("original_size"), field_set.original_size
    if r_size and f_size and tuple(r_size) != tuple(f_size):
        r_aspect, f_aspect = r_size[1] / r_size[0], f_size[1] / f_size[0]
        stretched = abs(f_aspect / r_aspect - 1) > 0.05
        found.append(Finding("image size", "warn" if stretched else "ok", _size(r_size), _size(f_size), detail=(
            f"field images are {_size(f_size)} (aspect {f_aspect:.2f}), the reference's were {_size(r_size)} "
            f"(aspect {r_aspect:.2f}): " + ("resizing to the model's input stretches them differently; crop to the "
                                            "reference's aspect before resizing" if stretched else
                                            "same aspect, resized to the model's input")),
            method="most common image size, width x height"))
    return found


def _channels(means: np.ndarray) -> str:
    return ("RGB " if len(means) == 3 else "grey ") + "/".join(f"{v:.0f}" for v in means)


def _size(size) -> str:
    return f"{size[1]}x{size[0]}"

