"""fusedmlp.datasets: the bundled and synthetic data sets, the user's files, the split."""

from __future__ import annotations

import numpy as np
import pytest

from fusedmlp import MLP, datasets
from fusedmlp.datasets import DATASETS, dataset_info, infer_task, load_dataset, load_file, train_test_split

REAL = ("digits", "breast_cancer", "diabetes", "iris", "wine")


# --- the registry and what each set loads as ---------------------------------------------------

def test_registry_lists_every_set_with_its_task_and_loss():
    assert set(DATASETS) == set(REAL) | {"moons", "spirals"}
    for name in DATASETS:
        info = dataset_info(name)
        assert info.name == name
        expected = "regression" if name == "diabetes" else "classification"
        assert info.task == expected
        assert info.loss == ("mse" if expected == "regression" else "cross_entropy")
        assert (info.n_classes is None) == (expected == "regression")


@pytest.mark.parametrize("name", DATASETS)
def test_every_set_loads_with_the_registered_shape_and_dtypes(name):
    info = dataset_info(name)
    X, y = load_dataset(name)
    assert X.shape == (info.n_samples, info.n_features) and X.dtype == np.float64
    assert y.shape == (info.n_samples,)
    assert np.isfinite(X).all() and np.isfinite(y).all()
    if info.task == "classification":
        assert y.dtype == np.int64
        np.testing.assert_array_equal(np.unique(y), np.arange(info.n_classes))  # every class present
    else:
        assert y.dtype == np.float64


@pytest.mark.parametrize("name", ["breast_cancer", "diabetes", "iris", "wine"])
def test_prepared_real_sets_are_standardized(name):
    X, y = load_dataset(name)
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(X.std(axis=0), 1.0, rtol=1e-12)
    raw_X, raw_y = load_dataset(name, raw=True)
    # Standardizing is affine per column: the raw values map onto the prepared ones.
    np.testing.assert_allclose((raw_X - raw_X.mean(axis=0)) / raw_X.std(axis=0), X, rtol=1e-12, atol=1e-12)
    if name == "diabetes":
        np.testing.assert_allclose(y, (raw_y - raw_y.mean()) / raw_y.std(), rtol=1e-12)
    else:
        np.testing.assert_array_equal(y, raw_y)


def test_digits_are_pixel_counts_scaled_to_unit_interval():
    X, y = load_dataset("digits")
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(X * 16, load_dataset("digits", raw=True)[0])
    np.testing.assert_array_equal(datasets.load_digits()[0], X)


@pytest.mark.parametrize("name", REAL)
def test_raw_sets_equal_scikit_learns_loaders(name):
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    bunch = getattr(sklearn_datasets, f"load_{name}")()
    X, y = load_dataset(name, raw=True)
    np.testing.assert_array_equal(X, bunch.data)
    np.testing.assert_array_equal(y, bunch.target)


def test_unknown_name_and_misplaced_options_are_clear_errors():
    with pytest.raises(ValueError, match="unknown data set 'mnist'.*digits"):
        load_dataset("mnist")
    with pytest.raises(TypeError, match="name"):
        dataset_info(3)
    with pytest.raises(ValueError, match="synthetic"):
        load_dataset("iris", n_samples=10)


# --- synthetic sets --------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [datasets.make_moons, datasets.make_spirals])
def test_synthetic_sets_are_deterministic_per_seed(make):
    X1, y1 = make(seed=3)
    X2, y2 = make(seed=3)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    X3, _ = make(seed=4)
    assert not np.array_equal(X1, X3)


def test_moons_without_noise_lie_on_their_two_half_circles():
    X, y = datasets.make_moons(n_samples=101, noise=0.0)
    assert X.shape == (101, 2) and np.bincount(y).tolist() == [51, 50]
    outer, inner = X[y == 0], X[y == 1]
    np.testing.assert_allclose(np.hypot(outer[:, 0], outer[:, 1]), 1.0, atol=1e-12)
    assert outer[:, 1].min() >= -1e-12  # the upper half circle
    np.testing.assert_allclose(np.hypot(inner[:, 0] - 1.0, inner[:, 1] - 0.5), 1.0, atol=1e-12)
    assert inner[:, 1].max() <= 0.5 + 1e-12  # the lower half circle


def test_moons_noise_has_the_requested_scale():
    clean, y_clean = datasets.make_moons(n_samples=2000, noise=0.0, seed=1)
    noisy, y_noisy = datasets.make_moons(n_samples=2000, noise=0.1, seed=1)
    # Same seed, same shuffle: the rows correspond, and the difference is the noise alone.
    np.testing.assert_array_equal(y_clean, y_noisy)
    assert abs(np.std(noisy - clean) - 0.1) < 0.01


def test_spirals_arms_wind_outwards():
    X, y = datasets.make_spirals(n_samples=300, n_classes=3, noise=0.0)
    assert X.shape == (300, 2) and np.bincount(y).tolist() == [100, 100, 100]
    radius = np.hypot(X[:, 0], X[:, 1])
    assert radius.max() <= 1.0 + 1e-12
    angle = np.arctan2(X[:, 0], X[:, 1])  # the generator places points at (r sin a, r cos a)
    expected = 4.0 * y + 4.0 * radius
    np.testing.assert_allclose(np.angle(np.exp(1j * (angle - expected))) * (radius > 1e-9), 0.0, atol=1e-9)


@pytest.mark.parametrize("name, hidden, epochs, floor", [("moons", 32, 40, 0.97), ("spirals", 64, 150, 0.9)])
def test_synthetic_sets_are_learnable(name, hidden, epochs, floor):
    X, y = load_dataset(name)
    classes = dataset_info(name).n_classes
    net = MLP([2, hidden, classes], activation="relu", backend="numpy", seed=0)
    net.fit(X, y, epochs=epochs, batch_size=32, lr=0.1, momentum=0.9)
    assert net.score(X, y) >= floor
    # ...and not linearly: a model with no hidden layer does much worse.
    linear = MLP([2, classes], backend="numpy", seed=0)
    linear.fit(X, y, epochs=epochs, batch_size=32, lr=0.1, momentum=0.9)
    assert linear.score(X, y) < floor - 0.05


def test_synthetic_options_pass_through_load_dataset():
    X, y = load_dataset("spirals", n_samples=90, noise=0.0, seed=5)
    np.testing.assert_array_equal(X, datasets.make_spirals(n_samples=90, noise=0.0, seed=5)[0])
    with pytest.raises(ValueError, match="n_samples"):
        datasets.make_moons(n_samples=1)
    with pytest.raises(ValueError, match="noise"):
        datasets.make_spirals(noise=-1.0)


# --- the user's files ---------------------------------------------------------------------------

def test_csv_with_a_header_and_a_named_target(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,label,b\n1,0,2.5\n3,1,4.5\n5,1,-6\n")
    X, y = load_file(path, target="label")
    np.testing.assert_array_equal(X, [[1, 2.5], [3, 4.5], [5, -6]])
    np.testing.assert_array_equal(y, [0, 1, 1])
    X, y = load_file(path)  # the last column by default
    np.testing.assert_array_equal(y, [2.5, 4.5, -6])
    X, y = load_file(path, target="-3")  # an index, from the end
    np.testing.assert_array_equal(y, [1, 3, 5])


def test_csv_without_header_and_features_only(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,0\n3,4,1\n")
    X, y = load_file(path)
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(y, [0, 1])
    X, y = load_file(path, n_features=3)  # as wide as a model's input: features only
    assert y is None and X.shape == (2, 3)


@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("a,b\n", "no data"),
    ("1,2\n3\n", "line 2 has 1 columns"),
    ("1,2\n3,x\n", "line 2: 'x' is not a number"),
    ("1\n2\n", "at least two columns"),
])
def test_bad_csv_content_is_a_value_error_naming_the_problem(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_file(path)


def test_csv_target_errors(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no column named 'c'.*a, b"):
        load_file(path, target="c")
    with pytest.raises(ValueError, match="out of range"):
        load_file(path, target="5")


def test_npz_roundtrip_and_errors(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, X=np.arange(6.0).reshape(3, 2), y=np.array([0, 1, 0]))
    X, y = load_file(path)
    np.testing.assert_array_equal(X, [[0, 1], [2, 3], [4, 5]])
    np.testing.assert_array_equal(y, [0, 1, 0])
    np.savez(tmp_path / "nox.npz", features=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="array named X"):
        load_file(tmp_path / "nox.npz")
    np.savez(tmp_path / "objects.npz", X=np.array([object(), 1], dtype=object))
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_file(tmp_path / "objects.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_file(tmp_path / "text.npz")
    with pytest.raises(ValueError, match=r"\.csv or \.npz"):
        load_file(tmp_path / "data.txt")
    with pytest.raises(FileNotFoundError):
        load_file(tmp_path / "missing.csv")


@pytest.mark.parametrize("y, task", [
    ([0, 1, 2, 1, 0, 2], "classification"),
    ([1.0, 2.0, 1.0, 2.0], "classification"),
    ([0.5, 1.5, 2.5, 3.5], "regression"),
    ([-1, 1, -1, 1], "regression"),
    (list(range(20)), "regression"),  # as many values as samples: not classes
])
def test_infer_task(y, task):
    assert infer_task(np.array(y)) == task


def test_diabetes_targets_would_be_guessed_regression():
    _, y = load_dataset("diabetes", raw=True)
    assert infer_task(y) == "regression"


# --- the split ----------------------------------------------------------------------------------

def test_train_test_split_is_stratified_deterministic_and_a_partition():
    X, y = datasets.load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_fraction=0.25, seed=3)
    assert len(y_test) == round(0.25 * len(y)) and len(y_train) + len(y_test) == len(y)
    # Each class's share of the test set is its share of the data, to within one sample.
    expected = np.bincount(y) * len(y_test) / len(y)
    assert np.all(np.abs(np.bincount(y_test, minlength=10) - expected) < 1)
    # A partition: every sample lands on exactly one side, with its own label.
    rows = np.concatenate([X_train, X_test])
    labels = np.concatenate([y_train, y_test])
    order, original = np.lexsort(rows.T[::-1]), np.lexsort(X.T[::-1])
    np.testing.assert_array_equal(rows[order], X[original])
    np.testing.assert_array_equal(labels[order], y[original])
    # The same seed gives the same split; another seed another.
    again = train_test_split(X, y, test_fraction=0.25, seed=3)
    np.testing.assert_array_equal(again[1], X_test)
    np.testing.assert_array_equal(again[3], y_test)
    other = train_test_split(X, y, test_fraction=0.25, seed=4)
    assert not np.array_equal(other[3], y_test)


def test_unstratified_split_of_regression_targets_is_a_partition():
    X = np.arange(100.0).reshape(50, 2)
    y = X[:, 0] * 0.5
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_fraction=0.2, seed=1, stratify=False)
    assert len(y_test) == 10 and len(y_train) == 40
    np.testing.assert_array_equal(np.sort(np.concatenate([y_train, y_test])), np.sort(y))
    np.testing.assert_array_equal(X_test[:, 0] * 0.5, y_test)  # rows keep their targets


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1e-9])
def test_train_test_split_rejects_fractions_that_leave_a_side_empty(fraction):
    X, y = np.zeros((10, 2)), np.arange(10) % 2
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(X, y, test_fraction=fraction)


def test_train_test_split_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same number of samples"):
        train_test_split(np.zeros((10, 2)), np.zeros(9))
