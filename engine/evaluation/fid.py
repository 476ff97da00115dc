"""Sample quality: FID in the feature space of a small MNIST classifier, its real-vs-real floor,
and the digit-class histogram of a sample set (:func:`score_samples` measures all of them).

Inception weights cannot be downloaded on many machines (cluster nodes, this project's CI), and
Inception features of upscaled 28x28 digits are a poor fit anyway. So the default backbone is a
small CNN trained by diffui on the MNIST training data it has, cached in the user cache folder
keyed by its data and code, with its accuracy on the MNIST test set recorded beside it. FID itself
is torchmetrics' ``FrechetInceptionDistance`` given that network as its feature extractor. FID is
biased upwards at small N, so every value comes with a floor: the FID between two disjoint random
sets of N real reference images. ``backbone = "inception"`` uses torchmetrics' InceptionV3 when its
weights can be loaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.data import datasets
from engine.evaluation import uncertainty
from engine.evaluation.uncertainty import Reference
from engine.files import atomic_save, atomic_write_json, cache_dir
from engine.spec.sections import DataSection

CLASSIFIER_VERSION = "lenet-v1"  # bump when the network or its training changes
MIN_ACCURACY = 0.98
EPOCHS = 30  # the classifier's training; $DIFFUI_CLASSIFIER_EPOCHS overrides it
RECOGNISED_QUANTILE = 0.99  # of the reference digits' distances to their class centroid
BACKBONES = ("lenet", "inception")


class MetricsError(Exception):
    """A metric cannot be computed here; ``str()`` is one line saying why and what to do."""


# --- the classifier ----------------------------------------------------------------------------


class Classifier(nn.Module):
    """Two conv-conv-pool stages and a 128-unit feature layer; ``features`` feeds FID."""

    num_features = 128

    def __init__(self):
        super().__init__()

        def stage(c_in, c_out):
            return [
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]

        self.body = nn.Sequential(
            *stage(1, 32),
            *stage(32, 64),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, self.num_features),
            nn.ReLU(),
        )
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(self.num_features, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 1, 28, 28) or (N, 28, 28) float in [0, 1]."""
        if x.dim() == 3:
            x = x[:, None]
        return self.body((x.float() - 0.1307) / 0.3081)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


class _Features(nn.Module):
    """The classifier's feature layer as torchmetrics' feature extractor (eval mode, no grad)."""

    def __init__(self, clf: Classifier):
        super().__init__()
        self.clf = clf.eval()
        self.num_features = Classifier.num_features

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clf.features(x)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random small rotations, scalings and shifts, one per image."""
    n = len(x)
    ang = (torch.rand(n, generator=g) - 0.5) * math.radians(24)
    scale = 1 + (torch.rand(n, generator=g) - 0.5) * 0.2
    shift = (torch.rand(n, 2, generator=g) - 0.5) * 0.2
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


@torch.no_grad()
def accuracy(clf: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    clf.eval()
    correct = sum(
        (clf(images[i : i + 1000].float() / 255).argmax(1) == labels[i : i + 1000]).sum().item()
        for i in range(0, len(images), 1000)
    )
    return correct / len(images)


def train_classifier(
    train: datasets.Dataset, epochs: int = EPOCHS, seed: int = 0, batch: int = 128, progress=None
) -> Classifier:
    """``progress(done, total)`` hears of every optimizer step."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = Classifier()
    opt = torch.optim.Adam(clf.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * math.ceil(len(train.images) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    x = train.images.float()[:, None] / 255
    y = train.labels
    done = 0
    for _ in range(epochs):
        clf.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            loss = F.cross_entropy(clf(_augment(x[idx], g)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if progress:
                progress(done, steps)
    return clf.eval()


@dataclass
class ClassifierInfo:
    path: Path
    test_accuracy: float | None
    train_source: str
    test_source: str
    trained_seconds: float


def _data_key(ds: datasets.Dataset) -> str:
    h = hashlib.sha256(ds.images.numpy().tobytes())
    h.update(ds.labels.numpy().tobytes())
    return h.hexdigest()[:16]


def classifier_epochs() -> int:
    """The classifier's training epochs: :data:`EPOCHS`, or ``$DIFFUI_CLASSIFIER_EPOCHS`` (the
    same network, data and training, fewer or more epochs: for trying a cheaper classifier in
    the tests). The epochs are part of the cache key, so every process that scores, workers on
    SSH hosts and in Slurm jobs included, must see the same value (tests/sshd.py passes it)."""
    value = os.environ.get("DIFFUI_CLASSIFIER_EPOCHS", "").strip()
    if not value:
        return EPOCHS
    if not value.isdigit() or int(value) < 1:
        raise MetricsError(f"$DIFFUI_CLASSIFIER_EPOCHS: expected a positive integer, got {value!r}")
    return int(value)


def load_classifier(
    epochs: int | None = None, data_cfg: DataSection | None = None, log=None, tasks=None
) -> tuple[Classifier, ClassifierInfo]:
    """The cached MNIST classifier, trained on first use (``epochs``: :func:`classifier_epochs`
    when None). Keyed by code version, training settings and the training data itself, so a
    different data source trains a new one. ``tasks(name)`` gives the ``progress(done, total)``
    callback of a long task (see :class:`engine.rundir.events.TaskProgress`)."""
    epochs = classifier_epochs() if epochs is None else epochs
    train = datasets.load_configured(data_cfg, "train", name="mnist")
    key = hashlib.sha256(f"{CLASSIFIER_VERSION}|{epochs}|{_data_key(train)}".encode()).hexdigest()[
        :16
    ]
    path = cache_dir() / f"classifier-{key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process trains; the others wait and reuse it
        if not path.with_suffix(".json").exists():
            _train_and_cache(
                train, epochs, data_cfg, path, log, tasks("FID classifier") if tasks else None
            )
    meta = json.loads(path.with_suffix(".json").read_text())
    clf = Classifier()
    clf.load_state_dict(torch.load(path, weights_only=True))
    return clf.eval(), ClassifierInfo(
        path,
        meta["test_accuracy"],
        meta["train_source"],
        meta["test_source"],
        meta["trained_seconds"],
    )


def _train_and_cache(
    train: datasets.Dataset, epochs: int, data_cfg: DataSection | None, path: Path, log, progress
) -> None:
    if log:
        log(f"training the FID classifier on {train.source} (once; cached in {path.parent})")
    t0 = time.time()
    clf = train_classifier(train, epochs=epochs, progress=progress)
    seconds = time.time() - t0
    try:
        test = reference_set(data_cfg)
        acc, test_source = accuracy(clf, test.images, test.labels), test.source
    except datasets.DataUnavailable:
        acc, test_source = None, ""
    atomic_save(lambda f: torch.save(clf.state_dict(), f), path)
    atomic_write_json(
        path.with_suffix(".json"),
        {
            "test_accuracy": acc,
            "train_source": train.source,
            "train_size": len(train.images),
            "test_source": test_source,
            "epochs": epochs,
            "trained_seconds": round(seconds, 1),
            "version": CLASSIFIER_VERSION,
        },
    )
    if log:
        log(
            f"FID classifier: {acc:.2%} on {test_source} ({seconds:.0f} s)"
            if acc is not None
            else f"FID classifier trained ({seconds:.0f} s); no MNIST test set to measure it on"
        )


def prepare_evaluation(specs: list, log=None, tasks=None) -> None:
    """Before runs start: fail now on an Inception backbone that cannot load (not after hours of
    training), and train the FID classifier here once rather than in several workers at once."""
    evaluated = [s for s in specs if s.evaluation.every > 0]
    if not evaluated:
        return
    if any(s.evaluation.backbone == "inception" for s in evaluated):
        inception_metric()
    try:
        load_classifier(data_cfg=evaluated[0].data, log=log, tasks=tasks)
    except datasets.DataUnavailable:
        pass  # the runs fail, each with the full message


def reference_set(data_cfg: DataSection | None = None) -> datasets.Dataset:
    """The real images FID compares against: the MNIST test set when present, else the
    training set."""
    try:
        return datasets.load_configured(data_cfg, "test", name="mnist")
    except datasets.DataUnavailable:
        return datasets.load_configured(data_cfg, "train", name="mnist")


# --- FID -----------------------------------------------------------------------------------------

# torchmetrics is imported where FID is computed: it takes seconds, and a worker whose run never
# scores samples (evaluation.every = 0) needs none of it.


def inception_metric():
    from torchmetrics.image.fid import FrechetInceptionDistance  # lazy: see above

    try:
        return FrechetInceptionDistance(feature=2048, normalize=True)
    except Exception as e:  # missing torch-fidelity, or its weights cannot be downloaded
        raise MetricsError(
            "evaluation.backbone = 'inception' needs torchmetrics' InceptionV3 FID weights, which "
            f"could not be loaded ({type(e).__name__}: {' '.join(str(e).split())[:200]}); "
            "use backbone = 'lenet' (the default, works offline)"
        ) from None


class FID:
    """FID of sample sets against a fixed reference set, plus the real-vs-real floor.

    Reference statistics and floors are cached beside the classifier, so each is computed once.
    """

    def __init__(
        self, backbone: str = "lenet", data_cfg: DataSection | None = None, log=None, tasks=None
    ):
        from torchmetrics.image.fid import FrechetInceptionDistance  # lazy: see above

        if backbone not in BACKBONES:
            raise MetricsError(f"unknown FID backbone {backbone!r} (expected one of {BACKBONES})")
        self.backbone = backbone
        self.tasks = tasks or (lambda name: None)
        self.clf, self.info = load_classifier(data_cfg=data_cfg, log=log, tasks=tasks)
        ref = reference_set(data_cfg)
        self.reference = ref.images.float() / 255  # (N, 28, 28) in [0, 1]
        self.reference_source = ref.source
        if backbone == "inception":
            self._make = inception_metric
            self._prep = lambda x: (x if x.dim() == 4 else x[:, None]).expand(-1, 3, -1, -1)
        else:
            self._make = lambda: FrechetInceptionDistance(
                feature=_Features(self.clf), normalize=True
            )
            self._prep = lambda x: x
        self.metric = self._make()
        self.metric.reset_real_features = False
        self._key = f"{backbone}-{self.info.path.stem}-{_data_key(ref)}"
        self._load_or_compute_reference()
        self._bootstrap: Reference | None = None
        self._centroids: tuple[torch.Tensor, float] | None = None

    def _update(
        self, metric, images: torch.Tensor, real: bool, batch: int = 500, progress=None
    ) -> None:
        for i in range(0, len(images), batch):
            metric.update(self._prep(images[i : i + batch].float()), real=real)
            if progress:
                progress(min(i + batch, len(images)), len(images))

    def _load_or_compute_reference(self) -> None:
        path = cache_dir() / f"fid-reference-{self._key}.pt"
        names = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")
        if path.exists():
            state = torch.load(path, weights_only=True)
            for n in names:
                setattr(self.metric, n, state[n])
            return
        self._update(
            self.metric, self.reference, real=True, progress=self.tasks("FID reference statistics")
        )
        atomic_save(lambda f: torch.save({n: getattr(self.metric, n) for n in names}, f), path)

    def score(self, images: torch.Tensor) -> float:
        """FID of ``images`` ((N, 28, 28) or (N, 1, 28, 28), floats in [0, 1]) against the
        whole reference set."""
        if len(images) < 2:
            raise MetricsError("FID needs at least 2 samples")
        if not torch.isfinite(images).all():
            raise MetricsError(
                "FID of samples that are not finite (NaN or inf): the model gives no usable samples"
            )
        self.metric.reset()  # keeps the reference statistics
        self._update(self.metric, images, real=False)
        return float(self.metric.compute())

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch: int = 500) -> np.ndarray:
        """The feature vectors FID compares, of ``images`` (as :meth:`score` takes them)."""
        extract = self.metric.inception
        out = []
        for i in range(0, len(images), batch):
            x = self._prep(images[i : i + batch].float())
            if self.backbone == "inception":  # what torchmetrics' update does with normalize
                x = (x * 255).byte()
            out.append(extract(x).double().cpu().numpy())
        return np.concatenate(out)

    def reference_features(self) -> np.ndarray:
        """The reference set's features (cached beside the reference statistics)."""
        path = cache_dir() / f"fid-reference-features-{self._key}.npy"
        if path.exists():
            return np.load(path)
        feats = self.features(self.reference).astype(np.float32)
        atomic_save(lambda f: np.save(f, feats), path)
        return feats

    def uncertainty(self, fake: np.ndarray, fid: float) -> tuple[float, float, float, float]:
        """(low, high, KID, KID's std) of a sample set with features ``fake`` (:meth:`features`)
        whose FID is ``fid``: the bootstrap interval of :mod:`engine.evaluation.uncertainty`
        over its features and the reference's, and KID in the same feature space."""
        real = self.reference_features()
        if self._bootstrap is None:  # once per scorer: the reference's resamples
            self._bootstrap = self._reference_resamples(real)
        point, low, high = uncertainty.fid_interval(fake, self._bootstrap)
        # the reflection about torchmetrics' value (equal to ``point`` up to rounding)
        low, high = max(0.0, low + fid - point), max(0.0, high + fid - point)
        kid, kid_std = uncertainty.kid(fake, real)
        return low, high, kid, kid_std

    def _reference_resamples(self, real: np.ndarray) -> Reference:
        """The reference's bootstrap summaries, cached beside its statistics (computed once:
        200 covariances of the whole reference set take a while on a CPU)."""
        path = cache_dir() / f"fid-bootstrap-{self._key}-{uncertainty.RESAMPLES}.pt"
        if path.exists():
            return Reference(real, kept=torch.load(path, weights_only=True))
        ref = Reference(real)
        if ref.kept is not None:
            atomic_save(lambda f: torch.save(ref.kept, f), path)
        return ref

    @torch.no_grad()
    def classify(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the classifier's digit, recognised) of each sample with features ``feats`` (lenet
        features: :meth:`features` of the default backbone). Recognised: its features lie
        within the distance of its digit's centroid (the mean feature of the reference digits
        classified so) that :data:`RECOGNISED_QUANTILE` of the reference digits lie within.
        The classifier alone names a digit for anything, noise included (uniform noise reads
        as an 8 with 100 % confidence): the distance is what tells a digit from noise."""
        if self._centroids is None:
            real = torch.as_tensor(self.lenet_reference_features(), dtype=torch.float64)
            pred = self._logits(real).argmax(1)
            cent = torch.stack([real[pred == k].mean(0) for k in range(10)])
            dist = (real - cent[pred]).norm(dim=1)
            self._centroids = (cent, float(torch.quantile(dist, RECOGNISED_QUANTILE)))
        cent, radius = self._centroids
        x = torch.as_tensor(feats, dtype=torch.float64)
        pred = self._logits(x).argmax(1)
        return pred.numpy(), ((x - cent[pred]).norm(dim=1) <= radius).numpy()

    def _logits(self, feats: torch.Tensor) -> torch.Tensor:
        """The classifier's head on features, in float64."""
        head = self.clf.head
        return F.linear(feats, head.weight.double(), head.bias.double())

    @torch.no_grad()
    def lenet_features(self, images: torch.Tensor) -> np.ndarray:
        """The classifier's features of ``images`` (the FID's own when the backbone is lenet)."""
        return np.concatenate(
            [
                self.clf.features(images[i : i + 1000].float()).double().numpy()
                for i in range(0, len(images), 1000)
            ]
        )

    def lenet_reference_features(self) -> np.ndarray:
        """The classifier's features of the reference set."""
        if self.backbone == "lenet":
            return self.reference_features()
        return self.lenet_features(self.reference)

    def floor(self, n: int, seed: int = 0) -> float:
        """FID between two disjoint random sets of ``n`` reference images (cached): what FID
        reads at this N for samples as good as real data. Random, not halves: the MNIST test
        set's halves come from different writer pools."""
        n = min(n, len(self.reference) // 2)
        path = cache_dir() / f"fid-floor-{self._key}.json"
        cached = json.loads(path.read_text()) if path.exists() else {}
        if f"{n}:{seed}" in cached:
            return cached[f"{n}:{seed}"]
        perm = torch.randperm(len(self.reference), generator=torch.Generator().manual_seed(seed))
        metric = self._make()
        progress = self.tasks("FID floor")
        self._update(
            metric,
            self.reference[perm[:n]],
            real=True,
            progress=progress and (lambda done, total: progress(done, 2 * total)),
        )
        self._update(
            metric,
            self.reference[perm[n : 2 * n]],
            real=False,
            progress=progress and (lambda done, total: progress(total + done, 2 * total)),
        )
        cached[f"{n}:{seed}"] = value = float(metric.compute())
        atomic_write_json(path, cached)
        return value

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The classifier's digit for each of ``images`` and its probability (softmax)."""
        self.clf.eval()
        probs = torch.cat(
            [self.clf(images[i : i + 1000].float()).softmax(1) for i in range(0, len(images), 1000)]
        )
        conf, pred = probs.max(1)
        return pred.numpy(), conf.double().numpy()

    def class_histogram(self, images: torch.Tensor) -> np.ndarray:
        """Counts of the classifier's predicted digit over ``images`` (shape (10,))."""
        return np.bincount(self.predict(images)[0], minlength=10)


def entropy_bits(hist) -> float:
    """Entropy of a class histogram in bits: log2(10) = 3.32 for all ten digits equally often,
    0 for a single class (mode collapse shows as a drop)."""
    p = np.asarray(hist, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0


@dataclass(frozen=True)
class Scores:
    """The quality of one sample set: what an evaluation epoch (an ``eval`` event) and a
    sampling study's value (a ``value`` event) both record."""

    n: int
    fid: float
    floor: float  # FID of two sets of n real images: what FID reads at this n for real data
    histogram: list[int]  # the classifier's predicted digits, counts of 0..9
    entropy: float  # of the histogram, in bits
    fid_low: float  # the FID's bootstrap interval (engine.evaluation.uncertainty)
    fid_high: float
    fid_level: float  # its level (0.95)
    fid_method: str  # how it was computed, in words
    kid: float  # KID in the same feature space: mean and std over subsets
    kid_std: float
    recognised: float  # the share of samples that read as a digit (FID.classify)
    classes: list[int]  # each sample's digit, in order (not in eval events: histogram)


def score_samples(fid: FID, x: torch.Tensor) -> Scores:
    """FID with its interval, KID, floor, class histogram and its entropy of the samples ``x``
    ((N, 28, 28) floats in [0, 1]), by the scorer ``fid``."""
    feats = fid.features(x)
    classes, recognised = fid.classify(feats if fid.backbone == "lenet" else fid.lenet_features(x))
    hist = np.bincount(classes, minlength=10)
    value = fid.score(x)
    low, high, kid, kid_std = fid.uncertainty(feats, value)
    return Scores(
        n=len(x),
        fid=value,
        floor=fid.floor(len(x)),
        histogram=hist.tolist(),
        entropy=entropy_bits(hist),
        fid_low=low,
        fid_high=high,
        fid_level=uncertainty.LEVEL,
        fid_method=uncertainty.METHOD,
        kid=kid,
        kid_std=kid_std,
        recognised=float(recognised.mean()),
        classes=classes.tolist(),
    )
