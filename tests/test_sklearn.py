"""fusedmlp.sklearn: scikit-learn's estimator checks, agreement with sklearn.neural_network's SGD
step for step, accuracy on real data, and the estimator API (pipelines, partial_fit, errors)."""

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed")

from sklearn import neural_network  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fusedmlp as fm  # noqa: E402
from fusedmlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from conftest import AVAILABLE_BACKENDS


# --- scikit-learn's own checks --------------------------------------------------------------
# Small and short enough to run fast. The regressor keeps scikit-learn's learning_rate_init=0.001:
# a larger rate diverges on check_regressor_multioutput's unscaled targets, as it does for
# sklearn's own SGD solver.

@parametrize_with_checks([MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.05, max_iter=50),
                          MLPRegressor(hidden_layer_sizes=(32,), max_iter=100)])
def test_passes_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# --- the same trajectory as sklearn's SGD solver ---------------------------------------------

def _scaled(X):
    return StandardScaler().fit_transform(X)


def _classification(n_classes, n=240, seed=0):
    X, y = make_classification(n_samples=n, n_features=8, n_informative=5, n_classes=n_classes,
                               random_state=seed)
    return _scaled(X), y


def _multilabel(n=240, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    Y = np.column_stack([X[:, 0] + X[:, 1] > 0, X[:, 2] > 0.3, X[:, 3] * X[:, 4] > 0]).astype(int)
    return X, Y


def _regression(n_outputs, n=240, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    Y = np.column_stack([np.sin(X[:, k]) + 0.5 * X[:, k + 1] ** 2 for k in range(n_outputs)])
    return X, (Y[:, 0] if n_outputs == 1 else Y)


PROBLEMS = {
    "binary": (MLPClassifier, neural_network.MLPClassifier, lambda: _classification(2)),
    "multiclass": (MLPClassifier, neural_network.MLPClassifier, lambda: _classification(4)),
    "multilabel": (MLPClassifier, neural_network.MLPClassifier, _multilabel),
    "regression": (MLPRegressor, neural_network.MLPRegressor, lambda: _regression(1)),
    "regression_3_outputs": (MLPRegressor, neural_network.MLPRegressor, lambda: _regression(3)),
}


def _fit_both(problem, backend="cpu", **params):
    ours_class, theirs_class, data = PROBLEMS[problem]
    X, y = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = ours_class(backend=backend, **params).fit(X, y)
        theirs = theirs_class(solver="sgd", **params).fit(X, y)
    return ours, theirs, X


def _assert_same_parameters(ours, theirs, rtol):
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("activation, nesterov", [("relu", True), ("tanh", False), ("logistic", True)])
def test_follows_sklearn_sgd_step_for_step(problem, activation, nesterov):
    # Same random_state: same initial parameters; shuffle=False: same batches; alpha=0 and a
    # partial last batch (240 = 3 * 70 + 30): every step and every loss must agree.
    ours, theirs, X = _fit_both(problem, hidden_layer_sizes=(12, 7), activation=activation,
                                nesterovs_momentum=nesterov, alpha=0.0, batch_size=70, learning_rate_init=0.05,
                                max_iter=15, shuffle=False, random_state=3)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert ours.n_outputs_ == theirs.n_outputs_ and ours.n_layers_ == theirs.n_layers_
    assert ours.out_activation_ == theirs.out_activation_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-9)
    _assert_same_parameters(ours, theirs, 1e-8)
    if isinstance(ours, MLPClassifier):
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-8, atol=1e-12)
    else:
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("backend", AVAILABLE_BACKENDS)
@pytest.mark.parametrize("learning_rate", ["invscaling", "adaptive"])
def test_learning_rate_schedules_match_sklearn_without_momentum(learning_rate, backend):
    # Without momentum the velocity convention does not matter: a changing rate must agree too.
    # tol=0.02 makes "adaptive" divide the rate a few times within the 40 epochs.
    ours, theirs, _ = _fit_both("multiclass", backend=backend, hidden_layer_sizes=(10,), alpha=0.0, momentum=0.0,
                                learning_rate=learning_rate, power_t=0.3, learning_rate_init=0.2, tol=0.02,
                                n_iter_no_change=2, batch_size=40, max_iter=40, shuffle=False, random_state=4)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours._learning_rate == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)
    assert ours._learning_rate < 0.2 / 5
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    _assert_same_parameters(ours, theirs, 1e-8)


@pytest.mark.parametrize("problem", ["multiclass", "regression"])
def test_l2_penalty_matches_sklearn(problem):
    # batch_size divides n, so the L2 term of every step is scikit-learn's exactly; the loss
    # curve's L2 term is estimated from the epoch's start and end (module docstring).
    ours, theirs, _ = _fit_both(problem, hidden_layer_sizes=(10,), alpha=0.5, batch_size=60,
                                learning_rate_init=0.05, max_iter=12, shuffle=False, random_state=1)
    _assert_same_parameters(ours, theirs, 1e-8)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-3)


def test_stops_when_sklearn_stops():
    # A large tol makes the training-loss rule fire early: same epoch as scikit-learn.
    ours, theirs, _ = _fit_both("multiclass", hidden_layer_sizes=(10,), alpha=0.0, learning_rate_init=0.05, tol=0.05,
                                n_iter_no_change=3, max_iter=200, shuffle=False, random_state=0)
    assert ours.n_iter_ == theirs.n_iter_ < 200
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-9)


@pytest.mark.parametrize("problem", ["binary", "multiclass", "regression"])
def test_early_stopping_matches_sklearn(problem):
    # Same held-out split, same validation scores, same stopping epoch, same best weights restored.
    ours, theirs, _ = _fit_both(problem, hidden_layer_sizes=(16,), learning_rate_init=0.1, early_stopping=True,
                                validation_fraction=0.25, n_iter_no_change=4, tol=1e-3, max_iter=300,
                                shuffle=False, random_state=2)
    assert ours.n_iter_ == theirs.n_iter_ < 300
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-9)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_, rel=1e-9)
    assert ours.best_loss_ is None and theirs.best_loss_ is None
    _assert_same_parameters(ours, theirs, 1e-8)


def test_partial_fit_continues_momentum_like_sklearn():
    X, y = _classification(3)
    classes = np.unique(y)
    params = dict(hidden_layer_sizes=(10,), alpha=0.0, learning_rate_init=0.05, shuffle=False, random_state=0)
    ours, theirs = MLPClassifier(**params), neural_network.MLPClassifier(solver="sgd", **params)
    for _ in range(6):
        ours.partial_fit(X, y, classes=classes)
        theirs.partial_fit(X, y, classes=classes)
    assert ours.n_iter_ == theirs.n_iter_ == 1
    assert ours.t_ == theirs.t_ == 6 * len(X)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    _assert_same_parameters(ours, theirs, 1e-8)
    # ... which is one fit of 6 epochs (never stopping early).
    whole = MLPClassifier(max_iter=6, n_iter_no_change=np.inf, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        whole.fit(X, y)
    _assert_same_parameters(ours, whole, 1e-12)


# --- accuracy on real data (shuffled: other orders than sklearn, comparable results) ----------

@pytest.mark.parametrize("loader", [load_digits, load_iris, load_breast_cancer])
def test_accuracy_comparable_to_sklearn(loader):
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(_scaled(X), y, random_state=0, stratify=y)
    params = dict(hidden_layer_sizes=(64,), learning_rate_init=0.05, max_iter=60, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(**params).fit(X_train, y_train).score(X_test, y_test)
        theirs = neural_network.MLPClassifier(solver="sgd", **params).fit(X_train, y_train).score(X_test, y_test)
    assert ours >= theirs - 0.03, (ours, theirs)
    assert ours > 0.9


def test_regressor_r2_on_diabetes_comparable_to_sklearn():
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(_scaled(X), y / y.std(), random_state=0)
    params = dict(hidden_layer_sizes=(16,), learning_rate_init=0.001, alpha=1e-3, max_iter=200, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPRegressor(**params).fit(X_train, y_train)
        theirs = neural_network.MLPRegressor(solver="sgd", **params).fit(X_train, y_train)
    ours_r2, theirs_r2 = ours.score(X_test, y_test), theirs.score(X_test, y_test)
    assert ours_r2 >= theirs_r2 - 0.05, (ours_r2, theirs_r2)
    assert ours_r2 > 0.25  # diabetes is noisy: linear regression reaches about 0.35 on this split
    assert ours.predict(X_test).shape == (len(X_test),)


# --- the estimator API ---------------------------------------------------------------------

def test_pipeline_and_grid_search():
    X, y = load_iris(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), MLPClassifier(max_iter=40, learning_rate_init=0.05, random_state=0))
    search = GridSearchCV(pipeline, {"mlpclassifier__hidden_layer_sizes": [(4,), (32,)],
                                     "mlpclassifier__activation": ["relu", "gelu"]}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    assert search.best_score_ > 0.85
    assert search.best_estimator_[-1].n_features_in_ == 4
    assert set(search.best_params_) == {"mlpclassifier__hidden_layer_sizes", "mlpclassifier__activation"}


def test_string_labels_and_binary_probabilities():
    X, y = _classification(2)
    labels = np.array(["no", "yes"])[y]
    model = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.1, max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, labels)
    assert list(model.classes_) == ["no", "yes"]
    assert model.n_outputs_ == 1 and model.out_activation_ == "logistic"
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    predicted = model.predict(X)
    assert predicted.dtype == labels.dtype
    np.testing.assert_array_equal(predicted, model.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(model.predict_log_proba(X), np.log(proba))
    assert model.score(X, labels) > 0.8


def test_multilabel_indicator_targets():
    X, Y = _multilabel()
    model = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.1, max_iter=100, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, Y)
    assert model.n_outputs_ == 3 and model.out_activation_ == "logistic"
    assert model.predict(X).shape == Y.shape
    assert model.predict_proba(X).shape == Y.shape
    assert model.score(X, Y) > 0.6


def test_partial_fit_needs_classes_first_and_rejects_new_ones():
    X, y = _classification(3)
    model = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="classes"):
        model.partial_fit(X, y)
    model.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])  # a batch need not hold every class
    assert list(model.classes_) == [0, 1, 2] and model.n_outputs_ == 3
    model.partial_fit(X, y)
    with pytest.raises(ValueError, match="classes"):
        model.partial_fit(X, np.where(y == 2, 7, y))


def test_partial_fit_regressor_lowers_the_loss():
    X, y = _regression(1)
    model = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.05, random_state=0)
    for _ in range(20):
        model.partial_fit(X, y)
    assert model.loss_curve_[-1] < 0.5 * model.loss_curve_[0]
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X, y)


def test_without_early_stopping_fields_are_sklearns():
    X, y = _classification(3)
    model = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.05, max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert model.validation_scores_ is None and model.best_validation_score_ is None
    assert model.best_loss_ == min(model.loss_curve_)
    assert len(model.loss_curve_) == model.n_iter_ == 20


def test_early_stopping_restores_the_best_validation_weights():
    X, y = _classification(3, n=400)
    model = MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.2, early_stopping=True, n_iter_no_change=5,
                          max_iter=300, random_state=0)
    model.fit(X, y)
    assert model.n_iter_ < 300
    assert len(model.validation_scores_) == model.n_iter_
    assert model.best_validation_score_ == max(model.validation_scores_)
    # The held-out split is scikit-learn's (not stratified for softmax outputs): recompute it.
    _, X_val, _, y_val = train_test_split(X, y, test_size=0.1, random_state=_random_state_after_init(model))
    assert model.score(X_val, y_val) == pytest.approx(model.best_validation_score_)


def _random_state_after_init(model):
    """random_state as the fit left it after drawing the initial parameters."""
    random_state = np.random.RandomState(model.random_state)
    for w, b in zip(model.coefs_, model.intercepts_):
        random_state.uniform(size=w.shape)
        random_state.uniform(size=b.shape)
    return random_state


def test_warm_start_continues_and_cold_start_restarts():
    X, y = _classification(3)
    params = dict(hidden_layer_sizes=(8,), learning_rate_init=0.05, max_iter=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm = MLPClassifier(warm_start=True, **params).fit(X, y)
        after_first = warm.loss_curve_[-1]
        warm.fit(X, y)
        assert len(warm.loss_curve_) == 20 and warm.n_iter_ == 10 and warm.t_ == 20 * len(X)
        assert warm.loss_curve_[10] < warm.loss_curve_[0]
        assert abs(warm.loss_curve_[10] - after_first) < 0.5 * (warm.loss_curve_[0] - after_first)
        with pytest.raises(ValueError, match="same classes"):
            warm.fit(X[y < 2], y[y < 2])

        cold = MLPClassifier(**params).fit(X, y)
        first = [c.copy() for c in cold.coefs_]
        cold.fit(X, y)
    assert len(cold.loss_curve_) == 10
    for a, b in zip(first, cold.coefs_):
        np.testing.assert_array_equal(a, b)


def test_convergence_warning_only_without_convergence():
    X, y = _classification(2)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(4,), max_iter=100, tol=10.0, n_iter_no_change=2,
                              random_state=0).fit(X, y)
    # The first epoch sets best_loss_; no later one beats it by tol, and the stopping count must
    # exceed n_iter_no_change: epochs 2, 3, 4.
    assert model.n_iter_ == 4


def test_verbose_prints_sklearns_lines(capsys):
    X, y = _classification(2)
    MLPClassifier(hidden_layer_sizes=(4,), max_iter=100, tol=10.0, n_iter_no_change=1, verbose=True,
                  random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out
    assert "Training loss did not improve more than tol=10.000000 for 1 consecutive epochs. Stopping." in out


def test_adaptive_learning_rate_divides_instead_of_stopping():
    X, y = _classification(2)
    params = dict(hidden_layer_sizes=(4,), max_iter=30, tol=10.0, n_iter_no_change=1, random_state=0)
    constant = MLPClassifier(**params).fit(X, y)
    assert constant.n_iter_ == 3
    # Every second epoch divides the rate by 5, from 0.001 until it is <= 1e-6: epochs 3, 5, 7,
    # 9 and 11 divide, epoch 13 stops; sklearn's own does the same.
    adaptive = MLPClassifier(learning_rate="adaptive", **params).fit(X, y)
    theirs = neural_network.MLPClassifier(solver="sgd", learning_rate="adaptive", **params).fit(X, y)
    assert adaptive.n_iter_ == theirs.n_iter_ == 13


def test_extra_activations_dtype_and_backend():
    X, y = _classification(3)
    for activation, expected in [("logistic", "sigmoid"), ("gelu", "gelu"), ("gelu_tanh", "gelu_tanh"),
                                 ("leaky_relu", "leaky_relu"), ("identity", "identity")]:
        model = MLPClassifier(hidden_layer_sizes=(8,), activation=activation, max_iter=2, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        assert model._model.activation == expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        single = MLPRegressor(hidden_layer_sizes=(8,), dtype="float32", max_iter=5, random_state=0).fit(X, y * 1.0)
        reference = MLPRegressor(hidden_layer_sizes=(8,), dtype="float32", backend="numpy", max_iter=5,
                                 random_state=0).fit(X, y * 1.0)
    assert single.predict(X).dtype == np.float32 and single.coefs_[0].dtype == np.float32
    np.testing.assert_allclose(single.predict(X), reference.predict(X), rtol=1e-4, atol=1e-4)


def test_warmup_steps_slow_the_first_epochs():
    X, y = _regression(1)
    params = dict(hidden_layer_sizes=(8,), learning_rate_init=0.05, batch_size=24, max_iter=1, shuffle=False,
                  random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = MLPRegressor(**{**params, "learning_rate_init": 1e-300}).fit(X, y).coefs_[0]
        plain = MLPRegressor(**params).fit(X, y).coefs_[0]
        warmed = MLPRegressor(warmup_steps=1000, **params).fit(X, y).coefs_[0]
    # Ten steps at rates (t + 1) / 1000 of the full rate move the weights far less.
    assert 0 < np.abs(warmed - start).max() < 0.05 * np.abs(plain - start).max()


def test_pickle_round_trip_predicts_the_same():
    X, y = _classification(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.predict_proba(X), model.predict_proba(X))
    copy.partial_fit(X, y)  # and it can go on training
    assert copy.t_ == model.t_ + len(X)


def test_deepcopy_and_the_underlying_mlp():
    import copy

    X, y = _classification(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    twin = copy.deepcopy(model)
    assert twin.mlp_ is not model.mlp_
    np.testing.assert_array_equal(twin.predict_proba(X), model.predict_proba(X))
    assert isinstance(model.mlp_, fm.MLP) and model.mlp_.loss == "cross_entropy"
    np.testing.assert_array_equal(model.mlp_.predict_proba(X), model.predict_proba(X))


def test_not_fitted_error():
    with pytest.raises(NotFittedError):
        MLPClassifier().mlp_
    assert not hasattr(MLPRegressor(), "mlp_")
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        MLPRegressor().predict(np.zeros((2, 3)))


def test_divergence_is_a_clear_error():
    X, y = _regression(1)
    with pytest.raises(ValueError, match="diverged.*learning_rate_init"):
        MLPRegressor(hidden_layer_sizes=(8,), learning_rate_init=1e3, max_iter=50, random_state=0).fit(X, y * 1e6)


BAD_PARAMS = [
    ({"solver": "adam"}, ValueError, "solver.*sgd"),
    ({"solver": "lbfgs"}, ValueError, "solver.*sgd"),
    ({"hidden_layer_sizes": (0,)}, ValueError, r"hidden_layer_sizes\[0\]"),
    ({"hidden_layer_sizes": "10"}, TypeError, "hidden_layer_sizes"),
    ({"hidden_layer_sizes": (4.5,)}, TypeError, r"hidden_layer_sizes\[0\]"),
    ({"activation": "softplus"}, ValueError, "activation"),
    ({"alpha": -1.0}, ValueError, "alpha"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": "big"}, TypeError, "batch_size"),
    ({"learning_rate": "cyclic"}, ValueError, "learning_rate"),
    ({"learning_rate_init": 0.0}, ValueError, "learning_rate_init"),
    ({"learning_rate_init": float("nan")}, ValueError, "learning_rate_init"),
    ({"max_iter": 0}, ValueError, "max_iter"),
    ({"max_iter": 2.5}, TypeError, "max_iter"),
    ({"tol": -1e-3}, ValueError, "tol"),
    ({"momentum": 1.0}, ValueError, "momentum"),
    ({"momentum": -0.1}, ValueError, "momentum"),
    ({"nesterovs_momentum": "yes"}, TypeError, "nesterovs_momentum"),
    ({"shuffle": 1}, TypeError, "shuffle"),
    ({"early_stopping": True, "validation_fraction": 0.0}, ValueError, "validation_fraction"),
    ({"validation_fraction": 1.0}, ValueError, "validation_fraction"),
    ({"n_iter_no_change": 0}, ValueError, "n_iter_no_change"),
    ({"backend": "tpu"}, ValueError, "backend"),
    ({"dtype": "float16"}, ValueError, "dtype"),
    ({"warmup_steps": -1}, ValueError, "warmup_steps"),
    ({"verbose": "loud"}, TypeError, "verbose"),
    ({"random_state": "seed"}, ValueError, "random_state|RandomState"),
]


@pytest.mark.parametrize("estimator_class", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("params, error, message", BAD_PARAMS, ids=[str(p) for p, _, _ in BAD_PARAMS])
def test_bad_parameters_are_clear_errors_at_fit(estimator_class, params, error, message):
    X, y = _classification(2, n=40)
    model = estimator_class(**params)  # never raises in __init__ (scikit-learn's rule)
    with pytest.raises(error, match=message):
        model.fit(X, y)
    assert not hasattr(model, "coefs_")


def test_fm_mlp_unchanged_by_the_wrapper():
    # The estimator builds an ordinary fusedmlp.MLP: its predictions are that MLP's.
    X, y = _classification(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    net = fm.MLP([8, 8, 3], activation="relu", loss="cross_entropy", dtype="float64")
    net.set_parameters(model.coefs_, model.intercepts_)
    np.testing.assert_array_equal(net.predict_proba(X), model.predict_proba(X))
