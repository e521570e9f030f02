"""The tailored coordinate system (TCS): the PCA of a frozen teacher's features, and what the trainer asks of it.

A teacher runs once over a dataset and its features are stored in a ``teacher_features`` column. TCS replaces the
teacher by a coordinate system of those features: their mean and the eigenvectors of their covariance, sorted by
explained variance. Students are trained to predict the coordinates of each example in that basis.

`FeatureStatistics` streams the first two moments in float64, so fitting needs O(D^2) memory whatever the number of
examples, and statistics of data shards (or processes) combine exactly. `CoordinateSystem` decomposes them, projects
features, writes the coordinates as a cached `datasets` column and saves/loads itself as safetensors + JSON (in a
student folder: `COORDINATE_SYSTEM_FOLDER`). `fit_coordinate_system` fits one under a multi-process launch too;
`target_scale` is the per-coordinate scale of the targets the coordinate loss compares; `check_coordinate_column` and
`check_finite_coordinates` refuse coordinate columns a student must not train on.
"""

from __future__ import annotations

import copy
import json
import logging
import numbers
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import safetensors.numpy
import torch
from accelerate.utils import broadcast_object_list
from datasets.fingerprint import Hasher

from .columns import COORDINATE_COLUMN, FEATURE_COLUMN, column_provenance, features_provenance, float32_column
from .config import TCSConfig, count_or_share
from .distributed import fail_together, merge_across_processes, shard_bounds
from .version import __version__

__all__ = ["CoordinateSystem", "FeatureStatistics", "fit_coordinate_system"]

logger = logging.getLogger(__name__)

# Where a student folder (and a feature dataset repo) keeps its coordinate system.
COORDINATE_SYSTEM_FOLDER = "tcs"
CONFIG_NAME = "coordinate_system.json"
WEIGHTS_NAME = "coordinate_system.safetensors"
FORMAT_VERSION = 1


def _to_matrix(batch: Any) -> np.ndarray:
    """A (B, D) float64 view/copy of a batch of feature vectors, checked to be 2-D and finite."""
    if isinstance(batch, torch.Tensor):
        batch = batch.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        x = np.asarray(batch, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"Could not read the features as a (num_examples, feature_dim) float array ({err}): every feature "
            "vector must be a list of numbers of the same length."
        ) from err
    if x.ndim != 2:
        raise ValueError(
            f"Expected a 2-D (num_examples, feature_dim) batch of features, got shape {x.shape}: pass a numpy array "
            "or torch tensor of feature vectors (wrap a list of vectors in numpy.asarray, a single one as x[None])."
        )
    bad_rows = ~np.isfinite(x).all(axis=1)
    if bad_rows.any():
        raise ValueError(
            f"{int(bad_rows.sum())} of {len(x)} feature rows contain NaN or inf (first: row "
            f"{int(bad_rows.argmax())} of this batch): the teacher features are invalid; recompute them (e.g. in "
            "float32 instead of float16) or filter those rows out."
        )
    return x


class FeatureStatistics:
    """Streaming float64 count, mean and scatter matrix of feature vectors.

    The fields are plain arrays so that a multi-process run can all-reduce them; `merge` combines two sets of
    statistics exactly (Chan et al.'s parallel formulas), so the result does not depend on how data is batched.

    Attributes:
        feature_dim: width D of the feature vectors.
        num_examples: number of feature vectors seen.
        mean: ``(D,)`` float64 mean.
        scatter: ``(D, D)`` float64 sum of ``(x - mean)(x - mean)^T``.
    """

    def __init__(self, feature_dim: int):
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, numbers.Integral) or feature_dim < 1:
            raise ValueError(f"feature_dim={feature_dim!r}: pass the width of the feature vectors, an int >= 1.")
        self.feature_dim = int(feature_dim)
        self.num_examples = 0
        self.mean = np.zeros(self.feature_dim, dtype=np.float64)
        self.scatter = np.zeros((self.feature_dim, self.feature_dim), dtype=np.float64)

    def __repr__(self) -> str:
        return f"FeatureStatistics(feature_dim={self.feature_dim}, num_examples={self.num_examples})"

    def update(self, batch: Any) -> FeatureStatistics:
        """Add a ``(B, D)`` batch (numpy array, torch tensor or list of lists); returns ``self``."""
        return self._add(_to_matrix(batch))

    def _add(self, x: np.ndarray) -> FeatureStatistics:
        if x.shape[1] != self.feature_dim:
            raise ValueError(
                f"Got a batch of {x.shape[1]}-dim features, but these statistics are over {self.feature_dim}-dim "
                "features: every batch must come from the same teacher and pooling."
            )
        if len(x):
            batch_mean = x.mean(axis=0)
            centered = x - batch_mean
            self._combine(len(x), batch_mean, centered.T @ centered)
        return self

    def merge(self, other: FeatureStatistics) -> FeatureStatistics:
        """New statistics over the examples of both ``self`` and ``other``; neither is modified."""
        if not isinstance(other, FeatureStatistics) or other.feature_dim != self.feature_dim:
            what = f"{other.feature_dim}-dim ones" if isinstance(other, FeatureStatistics) else type(other).__name__
            raise ValueError(
                f"Cannot merge statistics of {self.feature_dim}-dim features with {what}: merge only "
                "FeatureStatistics of features from the same teacher."
            )
        merged = FeatureStatistics(self.feature_dim)
        merged._combine(self.num_examples, self.mean, self.scatter)
        merged._combine(other.num_examples, other.mean, other.scatter)
        return merged

    def _combine(self, count: int, mean: np.ndarray, scatter: np.ndarray) -> None:
        if count == 0:
            return
        total = self.num_examples + count
        delta = mean - self.mean
        # New arrays rather than in-place updates: merged statistics must never alias their inputs.
        self.mean = self.mean + delta * (count / total)
        self.scatter = self.scatter + scatter + np.outer(delta, delta) * (self.num_examples * count / total)
        self.num_examples = total


def _require_column(dataset: datasets.Dataset | datasets.IterableDataset, column: str) -> None:
    columns = dataset.column_names
    if columns is not None and column not in columns:
        raise ValueError(
            f"The dataset has no {column!r} column (columns: {columns}): run "
            "`hf_tcs.precompute_teacher_features(dataset, teacher)` first, or pass the name of the column holding "
            "the teacher features as `feature_column=`."
        )


def _iter_batches(features: Any, feature_column: str, batch_size: int) -> Iterator[Any]:
    """The batches of ``features``, read lazily so that a large dataset is never fully in memory."""
    if isinstance(features, datasets.DatasetDict | datasets.IterableDatasetDict):
        raise ValueError(
            f"Got a DatasetDict with splits {list(features)}: fit the coordinate system on the training split only, "
            'e.g. `CoordinateSystem.fit(ds["train"])`.'
        )
    if isinstance(features, datasets.Dataset | datasets.IterableDataset):
        _require_column(features, feature_column)
        for batch in features.select_columns([feature_column]).with_format("numpy").iter(batch_size):
            yield batch[feature_column]
    elif isinstance(features, np.ndarray | torch.Tensor):
        for start in range(0, len(features), batch_size):
            yield features[start : start + batch_size]
    elif isinstance(features, Iterable):
        yield from features
    else:
        raise ValueError(
            f"Cannot fit on a {type(features).__name__}: pass a (N, D) numpy array or torch tensor, an iterable of "
            "(B, D) batches, or a datasets.Dataset with a teacher feature column."
        )


class CoordinateSystem:
    """PCA basis of teacher features: mean, components sorted by decreasing variance, and their variances.

    Build one with `fit`, `from_statistics` (same as the constructor) or `from_pretrained`. ``num_components`` (k)
    selects how many leading components are kept; the full spectrum stays available, so `with_num_components` changes
    k without refitting. Eigenvectors are sign-normalised (largest-magnitude entry positive) so that coordinates are
    reproducible across runs and platforms.
    """

    def __init__(
        self,
        statistics: FeatureStatistics,
        *,
        num_components: int | float | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        if not isinstance(statistics, FeatureStatistics):
            raise ValueError(
                f"Expected FeatureStatistics, got {type(statistics).__name__}: use `CoordinateSystem.fit(features)` "
                "to fit on raw features."
            )
        if statistics.num_examples < 2:
            raise ValueError(
                f"A coordinate system needs features of at least 2 examples, got {statistics.num_examples}: fit it "
                "on the (teacher features of the) whole training set."
            )
        for name in ("mean", "scatter"):
            if not np.isfinite(getattr(statistics, name)).all():
                raise ValueError(
                    f"The feature statistics' {name} holds NaN or inf: a coordinate system of them would train a NaN "
                    "student. Accumulate them again from finite teacher features (`FeatureStatistics.update` refuses "
                    "NaN/inf rows)."
                )
        # A private copy: the caller may keep updating (or all-reducing) its statistics.
        self._statistics = copy.deepcopy(statistics)
        self._metadata = _check_metadata(metadata)
        covariance = self._statistics.scatter / (statistics.num_examples - 1)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(-eigenvalues, kind="stable")
        # eigh returns tiny negative values for directions of zero variance; they are zero.
        eigenvalues = np.clip(eigenvalues[order], 0.0, None)
        components = eigenvectors[:, order].T
        pivots = np.abs(components).argmax(axis=1)
        components *= np.sign(components[np.arange(len(components)), pivots])[:, None]
        if eigenvalues.sum() <= 0:
            raise ValueError(
                f"All {statistics.num_examples} feature vectors are identical (zero variance), so they define no "
                "coordinates: check the teacher pass (pooling, inputs) that produced them."
            )
        self._mean = _read_only(self._statistics.mean.copy())
        self._all_eigenvalues = _read_only(eigenvalues)
        self._all_components = _read_only(np.ascontiguousarray(components))
        self._num_components = self._resolve_num_components(num_components)

    # ---- Construction ------------------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        features: Any,
        *,
        num_components: int | float | None = None,
        feature_column: str = FEATURE_COLUMN,
        batch_size: int = 4096,
        metadata: dict[str, Any] | None = None,
    ) -> CoordinateSystem:
        """Fit on teacher features in one streaming pass.

        Args:
            features: a ``(N, D)`` numpy array or torch tensor, an iterable of ``(B, D)`` batches, or a
                `datasets.Dataset` whose ``feature_column`` holds the features (read ``batch_size`` rows at a time).
            num_components: components kept: ``None`` for all D, an int in [1, D], or a float in (0, 1] for the
                fewest components reaching that share of explained variance.
            feature_column: the dataset column with the teacher features.
            batch_size: rows read and accumulated at a time.
            metadata: JSON-able provenance (teacher, revision, pooling, ...) saved with the coordinate system.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: pass a positive int.")
        statistics = None
        for batch in _iter_batches(features, feature_column, int(batch_size)):
            x = _to_matrix(batch)
            if statistics is None:
                statistics = FeatureStatistics(x.shape[1])
            statistics._add(x)
        if statistics is None or statistics.num_examples == 0:
            raise ValueError("Got no features to fit on: pass the teacher features of a non-empty training set.")
        if isinstance(features, datasets.Dataset):
            # Provenance the caller would otherwise have to collect by hand; explicit metadata wins.
            metadata = {**features_provenance(features, feature_column), **(metadata or {})}
        return cls(statistics, num_components=num_components, metadata=metadata)

    @classmethod
    def from_statistics(
        cls,
        statistics: FeatureStatistics,
        *,
        num_components: int | float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> CoordinateSystem:
        """Build from accumulated (e.g. all-reduced) statistics; later updates to ``statistics`` do not leak in."""
        return cls(statistics, num_components=num_components, metadata=metadata)

    def merge(self, other: CoordinateSystem) -> CoordinateSystem:
        """The coordinate system of both fits' data, keeping this one's k and metadata."""
        if not isinstance(other, CoordinateSystem):
            raise ValueError(
                f"Cannot merge a CoordinateSystem with a {type(other).__name__}: pass a CoordinateSystem."
            )
        statistics = self._statistics.merge(other._statistics)
        return type(self)(statistics, num_components=self.num_components, metadata=copy.deepcopy(self._metadata))

    def with_num_components(self, num_components: int | float | None) -> CoordinateSystem:
        """A copy keeping another number of components (same basis, no refit)."""
        new = copy.copy(self)
        new._num_components = self._resolve_num_components(num_components)
        new._metadata = copy.deepcopy(self._metadata)
        return new

    def _resolve_num_components(self, num_components: int | float | None) -> int:
        dim = self.feature_dim
        if num_components is None:
            return dim
        if isinstance(num_components, bool) or not isinstance(num_components, numbers.Real):
            raise ValueError(
                f"num_components={num_components!r}: pass an int in [1, {dim}], a float share of explained variance "
                "in (0, 1], or None to keep all components."
            )
        if isinstance(num_components, numbers.Integral):
            if not 1 <= num_components <= dim:
                raise ValueError(
                    f"num_components={num_components} is out of range for {dim}-dim features: pass an int in "
                    f"[1, {dim}], a float share in (0, 1], or None to keep all components."
                )
            return int(num_components)
        if not 0 < num_components <= 1:
            raise ValueError(
                f"num_components={num_components!r} is a float, read as a share of explained variance, so it must "
                "be in (0, 1]: pass an int for a number of components."
            )
        return self.components_for_variance(num_components)

    # ---- Basis ---------------------------------------------------------------------------------------------------

    @property
    def feature_dim(self) -> int:
        """Width D of the teacher features."""
        return self._statistics.feature_dim

    @property
    def num_examples(self) -> int:
        """Number of feature vectors the basis was fitted on."""
        return self._statistics.num_examples

    @property
    def num_components(self) -> int:
        """Number k of kept components (coordinates)."""
        return self._num_components

    @property
    def metadata(self) -> dict[str, Any]:
        """Free-form provenance (teacher, revision, pooling, dataset fingerprint, ...), saved with the basis."""
        return self._metadata

    @property
    def mean(self) -> np.ndarray:
        """``(D,)`` float64 mean of the features (read-only)."""
        return self._mean

    @property
    def components(self) -> np.ndarray:
        """``(k, D)`` float64 kept basis vectors, one per row, by decreasing variance (read-only)."""
        return self._all_components[: self._num_components]

    @property
    def eigenvalues(self) -> np.ndarray:
        """``(k,)`` variances of the kept coordinates (covariance eigenvalues, ddof=1)."""
        return self._all_eigenvalues[: self._num_components]

    @property
    def all_eigenvalues(self) -> np.ndarray:
        """``(D,)`` variances along all D components, decreasing."""
        return self._all_eigenvalues

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        """``(k,)`` share of the total variance along each kept component."""
        return self.eigenvalues / self._all_eigenvalues.sum()

    @property
    def total_explained_variance(self) -> float:
        """Share of the total variance kept by the k components."""
        return float(self.explained_variance_ratio.sum())

    @property
    def global_scale(self) -> float:
        """One factor making the mean variance over all D coordinates 1 while keeping the spectrum's shape."""
        return float(1.0 / np.sqrt(self._all_eigenvalues.mean()))

    def components_for_variance(self, share: float) -> int:
        """The fewest leading components whose explained variance reaches ``share`` (in (0, 1])."""
        if isinstance(share, bool) or not isinstance(share, numbers.Real) or not 0 < share <= 1:
            raise ValueError(f"share={share!r}: pass a share of explained variance in (0, 1], e.g. 0.95.")
        cumulative = np.cumsum(self._all_eigenvalues) / self._all_eigenvalues.sum()
        # The tolerance absorbs rounding, so that a share of 1.0 is reached by the last non-zero component.
        return min(int(np.count_nonzero(cumulative < share - 1e-12)) + 1, self.feature_dim)

    def __repr__(self) -> str:
        teacher = self._metadata.get("teacher")
        return (
            f"CoordinateSystem(feature_dim={self.feature_dim}, num_components={self.num_components}, "
            f"explained_variance={self.total_explained_variance:.1%}, num_examples={self.num_examples}"
            + (f", teacher={teacher!r})" if teacher else ")")
        )

    # ---- Projection --------------------------------------------------------------------------------------------

    def project(self, features: Any, *, standardize: bool = False) -> np.ndarray | torch.Tensor:
        """The ``(N, k)`` float32 coordinates ``(x - mean) @ components.T`` of ``(N, D)`` features.

        With ``standardize=True`` each coordinate is divided by its standard deviation (whitening). Torch input
        gives a torch tensor on the input's device; numpy or list input gives a numpy array.
        """
        x = _to_matrix(features)
        if x.shape[1] != self.feature_dim:
            teacher = self._metadata.get("teacher")
            raise ValueError(
                f"This coordinate system was fitted on {self.feature_dim}-dim features"
                + (f" of {teacher!r}" if teacher else "")
                + f"; got {x.shape[1]}-dim features: project features of the same teacher, or fit a new coordinate "
                "system."
            )
        coordinates = (x - self._mean) @ self.components.T
        if standardize:
            coordinates /= np.sqrt(self._standardizable_eigenvalues())
        coordinates = coordinates.astype(np.float32)
        if isinstance(features, torch.Tensor):
            return torch.from_numpy(coordinates).to(features.device)
        return coordinates

    def _standardizable_eigenvalues(self) -> np.ndarray:
        """The kept eigenvalues, refusing numerically zero ones that would turn coordinates into inf."""
        eigenvalues = self.eigenvalues
        tolerance = np.finfo(np.float64).eps * self.feature_dim * self._all_eigenvalues[0]
        zero = eigenvalues <= tolerance
        if zero.any():
            first = int(zero.argmax())
            raise ValueError(
                f"Cannot standardize: {int(zero.sum())} kept components (from component {first} on) have zero "
                f"variance in the fitted features. Keep only the first {first} with "
                f"`coordinate_system.with_num_components({first})`, or project with standardize=False."
            )
        return eigenvalues

    def add_coordinates(
        self,
        dataset: datasets.Dataset | datasets.DatasetDict,
        *,
        feature_column: str = FEATURE_COLUMN,
        output_column: str = COORDINATE_COLUMN,
        standardize: bool = False,
        batch_size: int = 1000,
        keep_features: bool = True,
    ) -> datasets.Dataset | datasets.DatasetDict:
        """A new dataset with a fixed-length float32 ``output_column`` of coordinates, for every split.

        Runs one batched, cached `datasets.map` whose fingerprint covers the input data, this basis, k and the
        options, so a rerun with the same inputs reuses the cache and any change recomputes. ``keep_features=False``
        drops the (usually much wider) feature column.
        """
        if isinstance(dataset, datasets.DatasetDict):
            return datasets.DatasetDict(
                {
                    split: self.add_coordinates(
                        split_dataset,
                        feature_column=feature_column,
                        output_column=output_column,
                        standardize=standardize,
                        batch_size=batch_size,
                        keep_features=keep_features,
                    )
                    for split, split_dataset in dataset.items()
                }
            )
        if not isinstance(dataset, datasets.Dataset):
            raise ValueError(
                f"add_coordinates expects a datasets.Dataset or DatasetDict, got {type(dataset).__name__}: for other "
                "inputs use `coordinate_system.project(features)`."
            )
        _require_column(dataset, feature_column)
        if output_column in dataset.column_names:
            raise ValueError(
                f"The dataset already has a {output_column!r} column: pass another `output_column=`, or remove it "
                f"first with `dataset.remove_columns({output_column!r})`."
            )
        if standardize:
            self._standardizable_eigenvalues()
        features = dataset.features.copy()
        # The column records which coordinate system made it, so that a trainer given another one can tell.
        provenance = {**self._metadata, "coordinate_system": self.fingerprint, "num_components": self.num_components}
        features[output_column] = float32_column(self.num_components, provenance)
        if not keep_features:
            del features[feature_column]
        options = {
            "feature_column": feature_column,
            "output_column": output_column,
            "standardize": standardize,
            "keep_features": keep_features,
        }
        result = dataset.with_format("numpy").map(
            lambda batch: {output_column: self.project(batch, standardize=standardize)},
            batched=True,
            batch_size=batch_size,
            input_columns=[feature_column],
            remove_columns=None if keep_features else [feature_column],
            features=features,
            new_fingerprint=self._fingerprint(dataset._fingerprint, options),
            desc=f"Adding {self.num_components} TCS coordinates",
        )
        # map keeps the format it read with (numpy); hand back the caller's own format.
        fmt = dataset.format
        columns = None
        if set(fmt["columns"]) != set(dataset.column_names):
            columns = [column for column in fmt["columns"] if column in result.column_names] + [output_column]
        return result.with_format(
            fmt["type"], columns=columns, output_all_columns=fmt["output_all_columns"], **fmt["format_kwargs"]
        )

    @property
    def fingerprint(self) -> str:
        """Hash of what defines this coordinate system: the fitted statistics (saved exactly) and k."""
        hasher = Hasher()
        statistics = self._statistics
        for array in (statistics.mean, statistics.scatter):
            hasher.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        hasher.update({"num_examples": statistics.num_examples, "num_components": self.num_components})
        return hasher.hexdigest()

    def _fingerprint(self, dataset_fingerprint: str, options: dict[str, Any]) -> str:
        hasher = Hasher()
        hasher.update(dataset_fingerprint)
        for array in (self._mean, self.components, self.eigenvalues):
            hasher.update(array.tobytes())
        hasher.update({"num_components": self.num_components, "hf_tcs": __version__, **options})
        return hasher.hexdigest()

    # ---- Serialization -----------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write ``coordinate_system.safetensors`` (float64 arrays) and ``coordinate_system.json`` (config)."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        # mean/scatter/num_examples define the basis; the decomposition is saved for readers other than hf_tcs.
        tensors = {
            "mean": self._statistics.mean,
            "scatter": self._statistics.scatter,
            "eigenvalues": self._all_eigenvalues,
            "components": self._all_components,
        }
        safetensors.numpy.save_file(
            {name: np.ascontiguousarray(array, dtype=np.float64) for name, array in tensors.items()},
            str(directory / WEIGHTS_NAME),
            metadata={"format": "np"},
        )
        config = {
            "format_version": FORMAT_VERSION,
            "hf_tcs_version": __version__,
            "feature_dim": self.feature_dim,
            "num_components": self.num_components,
            "num_examples": self.num_examples,
            "total_explained_variance": self.total_explained_variance,
            "explained_variance_ratio": self.explained_variance_ratio.tolist(),
            "metadata": self._metadata,
        }
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike,
        *,
        subfolder: str | None = None,
        revision: str | None = None,
        repo_type: str | None = None,
        num_components: int | float | None = None,
    ) -> CoordinateSystem:
        """Load a coordinate system saved by `save_pretrained` from a local folder or a Hub repo.

        The basis is rebuilt from the saved mean and scatter, so projections equal those of the saved object.
        ``repo_type="dataset"`` reads the one published next to precomputed features (`hf_tcs.push_features_to_hub`
        puts it in the dataset repo's ``tcs/`` subfolder). ``num_components`` overrides the saved k.
        """
        config_file, weights_file = _resolve_files(str(path_or_repo_id), subfolder, revision, repo_type)
        try:
            config = json.loads(Path(config_file).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{config_file} is not valid JSON ({err}): save the coordinate system again.") from err
        missing = [
            key for key in ("format_version", "feature_dim", "num_examples", "num_components") if key not in config
        ]
        if missing:
            raise ValueError(
                f"{config_file} lacks {missing}: it was not written by `CoordinateSystem.save_pretrained`."
            )
        if config["format_version"] != FORMAT_VERSION:
            raise ValueError(
                f"{config_file} has format_version {config['format_version']!r}, but this hf_tcs reads version "
                f"{FORMAT_VERSION}: install the hf_tcs version that wrote it ({config.get('hf_tcs_version')})."
            )
        tensors = safetensors.numpy.load_file(weights_file)
        not_finite = [name for name, array in tensors.items() if not np.isfinite(array).all()]
        if not_finite:
            raise ValueError(
                f"{weights_file} holds NaN or inf in {sorted(not_finite)}: this coordinate system is corrupt and "
                "would train a NaN student. Fit it again on finite teacher features and save it (`save_pretrained`)."
            )
        dim = config["feature_dim"]
        for name, shape in {"mean": (dim,), "scatter": (dim, dim)}.items():
            if name not in tensors or tensors[name].shape != shape:
                found = tensors[name].shape if name in tensors else "nothing"
                raise ValueError(
                    f"{weights_file} should hold a {name!r} tensor of shape {shape} (feature_dim={dim} in "
                    f"{CONFIG_NAME}), found {found}: the files are corrupt or mismatched; save them again together."
                )
        statistics = FeatureStatistics(dim)
        statistics.num_examples = int(config["num_examples"])
        statistics.mean = tensors["mean"].astype(np.float64)
        statistics.scatter = tensors["scatter"].astype(np.float64)
        return cls(
            statistics,
            num_components=config["num_components"] if num_components is None else num_components,
            metadata=config.get("metadata"),
        )


def fit_coordinate_system(dataset: datasets.Dataset, args: TCSConfig) -> CoordinateSystem:
    """Fit the coordinate system on a dataset's teacher features (`args.tcs_feature_column`), keeping
    `args.tcs_num_components` (a share of variance or a count); each process of a multi-process run reads only its
    shard.

    The processes' statistics are merged exactly (`FeatureStatistics.merge`), so the basis is the single-process one;
    the main process decomposes them and sends its result to the others, so every process holds bitwise the same
    basis (and the coordinate column gets the same cache fingerprint on every process).
    """
    num_components = count_or_share(args.tcs_num_components)  # the field may have been set after construction
    feature_column, state = args.tcs_feature_column, args.distributed_state
    if state is None or state.num_processes == 1:
        coordinate_system = CoordinateSystem.fit(dataset, num_components=num_components, feature_column=feature_column)
    else:
        with fail_together(state, "Fitting the coordinate system"):
            features = dataset.select_columns([feature_column]).with_format("numpy")
            statistics = FeatureStatistics(len(features[0][feature_column]))
            start, end = shard_bounds(len(features), state.num_processes, state.process_index)
            for batch in features.select(range(start, end)).iter(batch_size=4096):
                statistics.update(batch[feature_column])
        statistics = merge_across_processes(statistics, FeatureStatistics.merge)
        coordinate_system = None
        with fail_together(state, "Fitting the coordinate system"):
            if state.is_main_process:
                coordinate_system = CoordinateSystem.from_statistics(
                    statistics, num_components=num_components, metadata=features_provenance(dataset, feature_column)
                )
        coordinate_system = broadcast_object_list([coordinate_system])[0]
    logger.info("Coordinate system: %r", coordinate_system)
    return coordinate_system


def target_scale(
    scaling: str, coordinate_system: CoordinateSystem | None, k: int, targets: np.ndarray | None
) -> tuple[torch.Tensor, int]:
    """Per-coordinate scale of the k targets, and the dimension D the coordinate loss is normalised by.

    With a coordinate system the scale uses its full spectrum (all D eigenvalues); with only a coordinate column
    (`targets`, N x k) it falls back to the column's own variances, and D to the column width.
    """
    if coordinate_system is not None:
        variances = np.asarray(coordinate_system.eigenvalues[:k], dtype=np.float64)
        global_scale = coordinate_system.global_scale
        feature_dim = coordinate_system.feature_dim
    else:
        variances = targets.var(axis=0, ddof=1) if len(targets) > 1 else np.full(k, np.nan)
        if not variances.mean() > 0:  # NaN for one row, 0 for the same coordinates in every row
            raise ValueError(
                f"The teacher coordinates of the training set ({len(targets)} rows) have zero or undefined variance, "
                "so the target scale would be inf/NaN: a coordinate column needs at least 2 rows that differ. Compute "
                "it over the whole training set, pass the `coordinate_system` that made it, or set "
                "tcs_target_scaling='none'."
            )
        global_scale = 1.0 / np.sqrt(variances.mean())
        feature_dim = k
    if scaling == "none":
        scale = np.ones(k)
    elif scaling == "global":
        scale = np.full(k, global_scale)
    else:
        if (variances <= 0).any():
            raise ValueError(
                "tcs_target_scaling='standardize' divides each coordinate by its standard deviation, and some "
                "coordinates have zero variance: keep fewer components (tcs_num_components) or use 'global'."
            )
        scale = 1.0 / np.sqrt(variances)
    return torch.as_tensor(scale, dtype=torch.float32), feature_dim


def check_coordinate_column(
    dataset: datasets.Dataset, column: str, coordinate_system: CoordinateSystem | None
) -> dict[str, Any]:
    """The provenance recorded in the coordinate column; raise when another coordinate system made the column than
    the one the trainer uses (the student would learn one system's targets and `tcs/` would hold the other)."""
    recorded = column_provenance(dataset, column)
    made_by = recorded.get("coordinate_system")
    if coordinate_system is not None and made_by is not None and made_by != coordinate_system.fingerprint:
        raise ValueError(
            f"The {column!r} column was made by another coordinate system (fingerprint {made_by[:12]}...) than the "
            f"one given to the trainer ({coordinate_system.fingerprint[:12]}...; teacher "
            f"{coordinate_system.metadata.get('teacher')!r}): pass the coordinate system that made the column, or "
            f"recompute the column with `coordinate_system.add_coordinates(dataset)` after "
            f"`dataset.remove_columns({column!r})`."
        )
    return recorded


def check_finite_coordinates(dataset: datasets.Dataset, column: str, name: str = "the training set") -> None:
    """A NaN/inf teacher coordinate trains a NaN student while the logged loss looks fine: name the rows instead."""
    bad, start = [], 0
    for batch in dataset.select_columns([column]).with_format("numpy").iter(batch_size=4096):
        values = np.asarray(batch[column], dtype=np.float64)
        bad.extend((start + np.flatnonzero(~np.isfinite(values).all(axis=1))).tolist())
        start += len(values)
    if bad:
        raise ValueError(
            f"{len(bad)} rows of {name}'s {column!r} column hold NaN or inf (rows {bad[:5]}"
            f"{'...' if len(bad) > 5 else ''}): recompute the coordinates from finite teacher features "
            "(`coordinate_system.add_coordinates(dataset)`) or drop those rows."
        )


def _resolve_files(
    path_or_repo_id: str, subfolder: str | None, revision: str | None, repo_type: str | None
) -> tuple[str, str]:
    """Local paths of the config and weights files: from a folder, or downloaded from the Hub."""
    folder = Path(path_or_repo_id, subfolder or "")
    if folder.is_dir():
        files = (folder / CONFIG_NAME, folder / WEIGHTS_NAME)
        for file in files:
            if not file.is_file():
                raise OSError(
                    f"{folder} has no {file.name}: pass a folder written by `CoordinateSystem.save_pretrained`."
                )
        return str(files[0]), str(files[1])
    from huggingface_hub import hf_hub_download

    try:
        return tuple(
            hf_hub_download(
                path_or_repo_id,
                name,
                subfolder=subfolder,
                revision=revision,
                repo_type=repo_type,
                library_name="hf_tcs",
                library_version=__version__,
            )
            for name in (CONFIG_NAME, WEIGHTS_NAME)
        )
    except (OSError, ValueError) as err:
        # Hub errors (missing repo or file, offline mode, invalid repo id) are OSError or ValueError subclasses.
        raise OSError(
            f"Could not load a coordinate system from {path_or_repo_id!r}: it is not a local folder, and the Hub repo "
            f"could not be reached or found ({type(err).__name__}: {err}). Pass the path of a folder written by "
            "`CoordinateSystem.save_pretrained`, or check the repo id, revision, your network and HF_HUB_OFFLINE."
        ) from err


def _check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """A private JSON round-tripped copy, so that the saved provenance equals the in-memory one."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a dict of provenance, got {type(metadata).__name__}.")
    try:
        return json.loads(json.dumps(metadata))
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"metadata must be JSON-serializable to be saved with the coordinate system ({err}): convert its values "
            "to str, int, float, bool, list or dict."
        ) from err


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array
