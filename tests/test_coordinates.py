"""The PCA coordinate system: agreement with scikit-learn, exact streaming, projections, datasets and serialization."""

import json
import pickle
import time

import datasets
import huggingface_hub
import numpy as np
import pytest
import safetensors.numpy
import torch
from sklearn.decomposition import PCA

from hf_tcs.coordinates import CoordinateSystem, FeatureStatistics

N, D = 2000, 48


def correlated_features(num_examples: int = N, dim: int = D, seed: int = 0, rank: int | None = None) -> np.ndarray:
    """Gaussian latents through a random mixing matrix (distinct, decaying variances) plus an offset."""
    rng = np.random.default_rng(seed)
    rank = rank or dim
    mixing = rng.standard_normal((rank, dim)) * np.linspace(3.0, 0.1, rank)[:, None]
    return rng.standard_normal((num_examples, rank)) @ mixing + rng.uniform(-5, 5, dim)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return correlated_features()


@pytest.fixture(scope="module")
def cs(x) -> CoordinateSystem:
    return CoordinateSystem.fit(x, metadata={"teacher": "org/teacher", "pooling": "mean"})


def feature_dataset(features: np.ndarray) -> datasets.Dataset:
    features = np.asarray(features, dtype=np.float32)
    return datasets.Dataset.from_dict(
        {"teacher_features": features, "label": np.arange(len(features)) % 3},
        features=datasets.Features(
            {
                "teacher_features": datasets.List(datasets.Value("float32"), length=features.shape[1]),
                "label": datasets.Value("int64"),
            }
        ),
    )


# ---- PCA ---------------------------------------------------------------------------------------------------------


def test_matches_sklearn_pca(x, cs):
    pca = PCA(svd_solver="full").fit(x)
    np.testing.assert_allclose(cs.mean, pca.mean_, rtol=0, atol=1e-10)
    not_tiny = pca.explained_variance_ > 1e-8 * pca.explained_variance_[0]
    assert not_tiny.all()
    np.testing.assert_allclose(cs.all_eigenvalues, pca.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(cs.explained_variance_ratio, pca.explained_variance_ratio_, rtol=1e-6)
    # Same directions, up to sign: unit dot products, and equal projection matrices on leading subspaces.
    np.testing.assert_allclose(np.abs(np.sum(cs.components * pca.components_, axis=1)), 1.0, atol=1e-6)
    for k in (1, 10, 30):
        np.testing.assert_allclose(
            cs.components[:k].T @ cs.components[:k], pca.components_[:k].T @ pca.components_[:k], atol=1e-8
        )
    np.testing.assert_allclose(np.abs(cs.project(x)), np.abs(pca.transform(x)), rtol=1e-4, atol=1e-4)
    assert cs.total_explained_variance == pytest.approx(1.0)
    assert cs.feature_dim == D and cs.num_examples == N and cs.num_components == D


def test_components_are_orthonormal_sorted_and_read_only(cs):
    np.testing.assert_allclose(cs.components @ cs.components.T, np.eye(D), atol=1e-10)
    assert np.all(np.diff(cs.all_eigenvalues) <= 0)
    assert cs.mean.dtype == cs.components.dtype == cs.all_eigenvalues.dtype == np.float64
    with pytest.raises(ValueError):
        cs.components[0, 0] = 1.0


def test_sign_convention_is_deterministic(x, cs):
    rows = np.arange(D)
    pivots = np.abs(cs.components).argmax(axis=1)
    assert np.all(cs.components[rows, pivots] > 0)
    again = CoordinateSystem.fit(x)
    np.testing.assert_array_equal(again.components, cs.components)
    permuted = CoordinateSystem.fit(x[np.random.default_rng(1).permutation(N)])
    np.testing.assert_allclose(permuted.components, cs.components, rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        permuted.all_eigenvalues, cs.all_eigenvalues, rtol=0, atol=1e-12 * cs.all_eigenvalues[0]
    )


# ---- Streaming statistics ----------------------------------------------------------------------------------------


def assert_same_statistics(a: FeatureStatistics, b: FeatureStatistics):
    assert a.num_examples == b.num_examples
    np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a.scatter, b.scatter, rtol=1e-10, atol=1e-10 * np.abs(b.scatter).max())


def test_streaming_batching_and_merging_agree(x):
    whole = FeatureStatistics(D).update(x)
    streamed = FeatureStatistics(D)
    for start in range(0, N, 37):
        streamed.update(x[start : start + 37])
    first, second = FeatureStatistics(D).update(x[:700]), FeatureStatistics(D).update(x[700:])
    before = (first.mean.copy(), first.scatter.copy())
    merged = first.merge(second)
    assert_same_statistics(streamed, whole)
    assert_same_statistics(merged, whole)
    np.testing.assert_array_equal(first.mean, before[0])
    np.testing.assert_array_equal(first.scatter, before[1])
    assert first.num_examples == 700
    assert_same_statistics(merged.merge(FeatureStatistics(D)), whole)
    # The unbiased covariance, as numpy computes it.
    np.testing.assert_allclose(whole.scatter / (N - 1), np.cov(x, rowvar=False), rtol=1e-10)


def test_input_types_and_merging_coordinate_systems(x, cs):
    fits = [
        CoordinateSystem.fit(torch.from_numpy(x)),
        CoordinateSystem.fit(x, batch_size=100),
        CoordinateSystem.fit(x[i : i + 300] for i in range(0, N, 300)),
        CoordinateSystem.fit([x[:10].tolist(), x[10:]]),
        CoordinateSystem.fit(x[:900], num_components=5, metadata={"teacher": "a"}).merge(
            CoordinateSystem.fit(x[900:])
        ),
        CoordinateSystem.from_statistics(FeatureStatistics(D).update(x)),
    ]
    for fitted in fits:
        assert fitted.num_examples == N
        np.testing.assert_allclose(fitted.mean, cs.mean, atol=1e-10)
        np.testing.assert_allclose(fitted.all_eigenvalues, cs.all_eigenvalues, rtol=1e-9)
        np.testing.assert_allclose(fitted.components[:5], cs.components[:5], atol=1e-8)
    assert fits[4].num_components == 5 and fits[4].metadata == {"teacher": "a"}


def test_from_statistics_does_not_follow_later_updates(x):
    statistics = FeatureStatistics(D).update(x[:1000])
    fitted = CoordinateSystem.from_statistics(statistics)
    statistics.update(x[1000:])
    assert fitted.num_examples == 1000


# ---- Number of components ----------------------------------------------------------------------------------------


def test_num_components_int_none_and_copies(x, cs):
    assert CoordinateSystem.fit(x, num_components=None).num_components == D
    fitted = CoordinateSystem.fit(x, num_components=7)
    assert fitted.num_components == 7
    assert fitted.components.shape == (7, D)
    assert fitted.eigenvalues.shape == fitted.explained_variance_ratio.shape == (7,)
    assert fitted.all_eigenvalues.shape == (D,)
    assert fitted.total_explained_variance == pytest.approx(cs.explained_variance_ratio[:7].sum())
    assert CoordinateSystem.fit(x, num_components=np.int64(3)).num_components == 3
    smaller = cs.with_num_components(3)
    assert (smaller.num_components, cs.num_components) == (3, D)
    np.testing.assert_array_equal(smaller.components, cs.components[:3])
    np.testing.assert_array_equal(smaller.project(x[:50]), cs.project(x[:50])[:, :3])
    smaller.metadata["note"] = "only on the copy"
    assert "note" not in cs.metadata


@pytest.mark.parametrize("share", [0.3, 0.5, 0.9, 0.99, 1.0])
def test_float_share_picks_the_fewest_components_reaching_it(cs, x, share):
    k = CoordinateSystem.fit(x, num_components=share).num_components
    assert k == cs.components_for_variance(share) == cs.with_num_components(share).num_components
    cumulative = np.cumsum(cs.all_eigenvalues) / cs.all_eigenvalues.sum()
    assert cumulative[k - 1] >= share - 1e-12
    assert k == 1 or cumulative[k - 2] < share


@pytest.mark.parametrize("bad", [0, -1, D + 1, True, 0.0, 1.5, 64.0, float("nan"), "10", [3]])
def test_invalid_num_components(cs, x, bad):
    with pytest.raises(ValueError, match="num_components"):
        CoordinateSystem.fit(x[:100], num_components=bad)
    with pytest.raises(ValueError, match="num_components"):
        cs.with_num_components(bad)


# ---- Projection --------------------------------------------------------------------------------------------------


def test_projection_covariance_and_standardization(x, cs):
    coordinates = cs.project(x)
    assert coordinates.dtype == np.float32 and coordinates.shape == (N, D)
    np.testing.assert_allclose(coordinates.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(
        np.cov(coordinates, rowvar=False), np.diag(cs.eigenvalues), atol=1e-4 * cs.eigenvalues[0]
    )
    standardized = cs.project(x, standardize=True)
    np.testing.assert_allclose(np.cov(standardized, rowvar=False), np.eye(D), atol=1e-4)
    # One global factor brings the mean variance over all coordinates to 1 without changing the spectrum's shape.
    variances = np.var(coordinates.astype(np.float64) * cs.global_scale, axis=0, ddof=1)
    assert variances.mean() == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(variances / variances[0], cs.eigenvalues / cs.eigenvalues[0], rtol=1e-4)


def test_project_input_types(x, cs):
    small = cs.with_num_components(6)
    expected = small.project(x[:20])
    as_torch = small.project(torch.from_numpy(x[:20]).float())
    assert isinstance(as_torch, torch.Tensor) and as_torch.dtype == torch.float32 and as_torch.shape == (20, 6)
    np.testing.assert_allclose(as_torch.numpy(), expected, rtol=1e-4, atol=1e-4)
    as_list = small.project(x[:20].tolist())
    assert isinstance(as_list, np.ndarray)
    np.testing.assert_array_equal(as_list, expected)
    features = x[:20].copy()
    small.project(features, standardize=True)
    np.testing.assert_array_equal(features, x[:20])


def test_standardize_refuses_zero_variance_components():
    low_rank = correlated_features(500, D, rank=5)
    fitted = CoordinateSystem.fit(low_rank)
    with pytest.raises(ValueError, match=r"zero variance.*with_num_components\(5\)"):
        fitted.project(low_rank, standardize=True)
    assert fitted.all_eigenvalues.min() >= 0
    assert fitted.components_for_variance(1.0) <= 6
    assert np.isfinite(fitted.with_num_components(5).project(low_rank, standardize=True)).all()


def test_project_errors(cs, x):
    with pytest.raises(ValueError, match=r"48-dim features of 'org/teacher'; got 32-dim"):
        cs.project(np.zeros((3, 32)))
    bad = x[:10].copy()
    bad[4, 2] = np.inf
    with pytest.raises(ValueError, match=r"1 of 10 feature rows contain NaN or inf \(first: row 4"):
        cs.project(bad)
    with pytest.raises(ValueError, match="2-D"):
        cs.project(x[0])


# ---- datasets ----------------------------------------------------------------------------------------------------


def test_add_coordinates_to_a_dataset(x, cs):
    dataset = feature_dataset(x[:300])
    before = (dataset._fingerprint, dataset.column_names, dataset.format)
    small = cs.with_num_components(8)
    out = small.add_coordinates(dataset, batch_size=64)
    column = out.features["tcs_coordinates"]  # its value type's `id` records the coordinate system
    assert isinstance(column, datasets.List) and column.length == 8 and column.feature.dtype == "float32"
    assert out.column_names == ["teacher_features", "label", "tcs_coordinates"]
    assert out.format["type"] is None and isinstance(out[0]["tcs_coordinates"], list)
    values = out.with_format("numpy")[:]["tcs_coordinates"]
    assert values.dtype == np.float32 and values.shape == (300, 8)
    np.testing.assert_allclose(values, small.project(x[:300].astype(np.float32)), rtol=1e-6, atol=1e-6)
    assert (dataset._fingerprint, dataset.column_names, dataset.format) == before
    assert out["label"] == dataset["label"]

    dropped = small.add_coordinates(dataset, keep_features=False, output_column="z", standardize=True)
    assert dropped.column_names == ["label", "z"]
    np.testing.assert_allclose(
        dropped.with_format("numpy")[:]["z"], small.project(x[:300], standardize=True), rtol=1e-5, atol=1e-5
    )


def test_add_coordinates_keeps_the_callers_format(x, cs):
    dataset = feature_dataset(x[:50]).with_format("torch")
    out = cs.with_num_components(4).add_coordinates(dataset)
    assert out.format["type"] == "torch"
    assert isinstance(out[0]["tcs_coordinates"], torch.Tensor)


def test_add_coordinates_to_a_dataset_dict(x, cs):
    splits = datasets.DatasetDict({"train": feature_dataset(x[:100]), "test": feature_dataset(x[100:130])})
    out = cs.with_num_components(5).add_coordinates(splits)
    assert isinstance(out, datasets.DatasetDict) and set(out) == {"train", "test"}
    assert out["test"].features["tcs_coordinates"].length == 5
    assert out["test"].num_rows == 30
    assert "tcs_coordinates" not in splits["train"].column_names


def test_add_coordinates_fingerprint(x, cs, tmp_path):
    dataset = feature_dataset(x[:40])

    def fingerprint(coordinates, **kwargs):
        return coordinates.add_coordinates(dataset, **kwargs)._fingerprint

    reference = fingerprint(cs)
    assert fingerprint(cs) == reference
    assert fingerprint(cs, batch_size=7) == reference
    cs.save_pretrained(tmp_path)
    assert fingerprint(CoordinateSystem.from_pretrained(tmp_path)) == reference
    changed = [
        fingerprint(cs.with_num_components(10)),
        fingerprint(cs, standardize=True),
        fingerprint(cs, keep_features=False),
        fingerprint(cs, output_column="other"),
        fingerprint(CoordinateSystem.fit(correlated_features(seed=3))),
    ]
    assert len({reference, *changed}) == len(changed) + 1


def test_add_coordinates_errors(x, cs):
    dataset = feature_dataset(x[:20])
    with pytest.raises(ValueError, match=r"no 'emb' column.*\['teacher_features', 'label'\].*precompute_teacher"):
        cs.add_coordinates(dataset, feature_column="emb")
    with pytest.raises(ValueError, match="already has a 'label' column.*output_column"):
        cs.add_coordinates(dataset, output_column="label")
    narrow = feature_dataset(x[:20, :16])
    with pytest.raises(ValueError, match="48-dim.*16-dim"):
        cs.add_coordinates(narrow)


def test_fit_on_a_dataset_column_in_batches(x, cs):
    dataset = feature_dataset(x)
    fitted = CoordinateSystem.fit(dataset, batch_size=128, metadata={"teacher": "org/teacher"})
    from_array = CoordinateSystem.fit(x.astype(np.float32))
    assert fitted.num_examples == N
    np.testing.assert_allclose(fitted.mean, from_array.mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(fitted.all_eigenvalues, from_array.all_eigenvalues, rtol=1e-10)
    np.testing.assert_allclose(fitted.components, from_array.components, atol=1e-8)
    assert fitted.metadata["teacher"] == "org/teacher"
    assert fitted.metadata["dataset_fingerprint"] == dataset._fingerprint
    assert fitted.metadata["feature_column"] == "teacher_features"
    renamed = dataset.rename_column("teacher_features", "emb")
    assert CoordinateSystem.fit(renamed, feature_column="emb").num_examples == N


# ---- Serialization -----------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(x, cs, tmp_path, monkeypatch):
    original = cs.with_num_components(10)
    folder = tmp_path / "nested" / "tcs"
    original.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["coordinate_system.json", "coordinate_system.safetensors"]
    config = json.loads((folder / "coordinate_system.json").read_text())
    assert config["feature_dim"] == D and config["num_components"] == 10 and config["num_examples"] == N
    assert config["metadata"] == {"teacher": "org/teacher", "pooling": "mean"}
    assert config["total_explained_variance"] == pytest.approx(original.total_explained_variance)
    assert len(config["explained_variance_ratio"]) == 10 and "hf_tcs_version" in config
    tensors = safetensors.numpy.load_file(folder / "coordinate_system.safetensors")
    assert {name: (t.shape, t.dtype) for name, t in tensors.items()} == {
        "mean": ((D,), np.float64),
        "scatter": ((D, D), np.float64),
        "eigenvalues": ((D,), np.float64),
        "components": ((D, D), np.float64),
    }

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle must not be used to load a coordinate system")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    loaded = CoordinateSystem.from_pretrained(folder)
    for name in ("mean", "components", "eigenvalues", "all_eigenvalues", "explained_variance_ratio"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name))
    assert (loaded.num_components, loaded.num_examples, loaded.feature_dim) == (10, N, D)
    assert loaded.metadata == original.metadata and loaded.global_scale == original.global_scale
    np.testing.assert_array_equal(loaded.project(x), original.project(x))
    np.testing.assert_array_equal(loaded.project(x, standardize=True), original.project(x, standardize=True))
    assert CoordinateSystem.from_pretrained(tmp_path / "nested", subfolder="tcs", num_components=3).num_components == 3
    assert repr(loaded) == repr(original)
    assert all(part in repr(loaded) for part in ("feature_dim=48", "num_components=10", "org/teacher", "2000"))


def test_load_errors(cs, tmp_path):
    cs.save_pretrained(tmp_path / "ok")
    config = json.loads((tmp_path / "ok" / "coordinate_system.json").read_text())

    def write(name, **changes):
        folder = tmp_path / name
        cs.save_pretrained(folder)
        (folder / "coordinate_system.json").write_text(json.dumps({**config, **changes}))
        return folder

    with pytest.raises(ValueError, match="format_version 99"):
        CoordinateSystem.from_pretrained(write("future", format_version=99))
    with pytest.raises(ValueError, match=r"'mean' tensor of shape \(12,\)"):
        CoordinateSystem.from_pretrained(write("shape", feature_dim=12))
    missing = write("missing")
    (missing / "coordinate_system.safetensors").unlink()
    with pytest.raises(OSError, match="no coordinate_system.safetensors.*save_pretrained"):
        CoordinateSystem.from_pretrained(missing)


@pytest.mark.parametrize("name", ["mean", "scatter", "components"])
def test_a_saved_coordinate_system_with_nan_or_inf_is_refused_naming_the_file(cs, tmp_path, name):
    cs.save_pretrained(tmp_path)
    weights = tmp_path / "coordinate_system.safetensors"
    tensors = safetensors.numpy.load_file(weights)
    tensors[name] = tensors[name].copy()
    tensors[name].flat[3] = np.nan if name != "scatter" else np.inf
    safetensors.numpy.save_file(tensors, weights)
    with pytest.raises(ValueError, match=f"{weights} holds NaN or inf in \\['{name}'\\]"):
        CoordinateSystem.from_pretrained(tmp_path)


def test_statistics_with_nan_or_inf_make_no_coordinate_system(x):
    for name in ("mean", "scatter"):
        statistics = FeatureStatistics(D).update(x)
        getattr(statistics, name).flat[0] = np.inf
        with pytest.raises(ValueError, match=f"statistics' {name} holds NaN or inf"):
            CoordinateSystem.from_statistics(statistics)


def test_unknown_hub_repo_offline_fails_fast_and_helpfully(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(OSError, match="could not be reached or found.*save_pretrained"):
        CoordinateSystem.from_pretrained("hf-tcs-tests/no-such-coordinate-system")
    with pytest.raises(OSError, match="not a local folder"):
        CoordinateSystem.from_pretrained(str(tmp_path / "not" / "there"))
    assert time.perf_counter() - start < 10


# ---- Errors ------------------------------------------------------------------------------------------------------


def test_fit_errors(x):
    bad = x[:100].copy()
    bad[[3, 50], 0] = np.nan
    with pytest.raises(ValueError, match=r"2 of 100 feature rows contain NaN or inf \(first: row 3.*recompute"):
        CoordinateSystem.fit(bad)
    with pytest.raises(ValueError, match="no features"):
        CoordinateSystem.fit(np.zeros((0, D)))
    with pytest.raises(ValueError, match="no features"):
        CoordinateSystem.fit(feature_dataset(x[:10]).select([]))
    with pytest.raises(ValueError, match="at least 2"):
        CoordinateSystem.fit(x[:1])
    with pytest.raises(ValueError, match="identical"):
        CoordinateSystem.fit(np.ones((10, D)))
    with pytest.raises(ValueError, match=r"no 'emb' column.*teacher_features.*feature_column="):
        CoordinateSystem.fit(feature_dataset(x[:10]), feature_column="emb")
    with pytest.raises(ValueError, match=r'ds\["train"\]'):
        CoordinateSystem.fit(datasets.DatasetDict({"train": feature_dataset(x[:10])}))
    with pytest.raises(ValueError, match="same teacher"):
        CoordinateSystem.fit([x[:10], x[10:20, :10]])
    with pytest.raises(ValueError, match="JSON"):
        CoordinateSystem.fit(x[:10], metadata={"teacher": object()})


def test_statistics_errors(x):
    with pytest.raises(ValueError, match="same teacher"):
        FeatureStatistics(D).update(x[:5, :10])
    with pytest.raises(ValueError, match="48-dim features with 10-dim ones"):
        FeatureStatistics(D).merge(FeatureStatistics(10))
    with pytest.raises(ValueError, match="feature_dim"):
        FeatureStatistics(0)
    with pytest.raises(ValueError, match="NaN or inf"):
        FeatureStatistics(3).update([[1.0, 2.0, float("inf")]])
