"""scikit-learn estimators over fusedmlp.MLP: MLPClassifier and MLPRegressor.

They take scikit-learn's parameter names where the two overlap, follow
sklearn.neural_network's SGD solver and its stopping rules epoch for epoch, and train with
fusedmlp's kernels (backend="cpu" by default). Differences from scikit-learn, all deliberate:

- solver: SGD only. solver="sgd" is accepted for compatibility, any other value is an error.
  The default learning_rate_init is scikit-learn's (0.001), which suits its default Adam solver
  better than SGD: raise it (e.g. 0.01 - 0.1) for faster training.
- The step each batch takes is scikit-learn's. Its gradient is s times fusedmlp's mean-loss
  gradient (s = 1 for softmax outputs; n_outputs for logistic outputs, whose log-loss it sums
  over the outputs; n_outputs / 2 for regression, whose loss is half the squared error and whose
  gradient it sums over the outputs) plus alpha * W / batch_size. So the MLP trains with
  lr = s * learning_rate_init and weight_decay = alpha / (s * batch_size) (alpha / batch_size
  for a softmax classifier). The L2 term uses the full batch_size also for the last, smaller
  batch of an epoch (scikit-learn divides by that batch's size), because fusedmlp's weight decay
  is one number per call. Momentum follows PyTorch's convention, which is scikit-learn's
  whenever the learning rate is constant; with learning_rate="invscaling"/"adaptive" or
  warmup_steps the velocity is not rescaled when the rate changes.
- loss_curve_ is scikit-learn's loss (data loss plus 0.5 * alpha * ||W||^2 / batch_size per
  batch), with the L2 term of each epoch computed from the mean of ||W||^2 at the epoch's start
  and end rather than before every step.
- Initialisation and the early-stopping split are scikit-learn's, drawn from the same
  random_state in the same order, so with shuffle=False and float64 the parameters follow
  scikit-learn's (solver="sgd") step for step. With shuffle=True each epoch's order is
  np.random.default_rng(seed).permutation(n) for a seed drawn from random_state, so runs are
  reproducible but visit the samples in other orders than scikit-learn.
- Extras: the activations gelu, gelu_tanh, leaky_relu and sigmoid (= scikit-learn's "logistic"),
  backend ("cpu" or "numpy"), dtype ("float64", scikit-learn's precision, or "float32" for
  speed) and warmup_steps (linear warmup of the learning rate over the first steps of each fit).
- No sample_weight and no sparse input (a TypeError names it).
- coefs_ and intercepts_ are copies of the trained parameters, taken after each fit; changing
  them does not change the model.
- A pickled estimator keeps its parameters and every fitted attribute but not the momentum of a
  partial_fit sequence in progress: after unpickling, the next partial_fit starts it afresh.

Fitted attributes (as scikit-learn's): coefs_, intercepts_ (W shaped (fan_in, fan_out), b),
loss_curve_, best_loss_ (None with early_stopping), validation_scores_ and
best_validation_score_ (None without early_stopping), n_iter_ (epochs of the last fit call; 1
after partial_fit), t_ (training samples seen, summed over epochs and calls: scikit-learn's
meaning, not a step count), n_features_in_ (and feature_names_in_ for DataFrames), n_outputs_,
n_layers_, out_activation_ ("softmax", "logistic" or "identity"), and classes_ (classifier).
mlp_ is the trained fusedmlp.MLP (e.g. estimator.mlp_.to_torch()).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import (
        _check_partial_fit_first_call,
        check_classification_targets,
        type_of_target,
        unique_labels,
    )
    from sklearn.utils.validation import check_is_fitted, column_or_1d
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fusedmlp.sklearn needs scikit-learn (pip install scikit-learn); "
        f"importing it failed: {error}"
    ) from error

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sklearn_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    _sklearn_validate_data = None

from ._validation import check_bool, check_choice, check_dtype, check_float, check_int
from .backends import BACKENDS
from .errors import DivergenceError
from .mlp import MLP

# scikit-learn's activation names, and fusedmlp's extras, to fusedmlp's names.
ACTIVATIONS = {
    "identity": "identity",
    "logistic": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "gelu": "gelu",
    "gelu_tanh": "gelu_tanh",
    "leaky_relu": "leaky_relu",
}
LEARNING_RATES = ("constant", "invscaling", "adaptive")


def _sklearn_initial_parameters(layer_sizes, activation, random_state, dtype):
    """scikit-learn's initialisation, drawn in its order from the same RandomState, so that the
    same random_state starts from the same parameters: per layer W then b, both uniform in
    +-sqrt(factor / (fan_in + fan_out)), factor 2 for logistic hidden layers, else 6."""
    factor = 2.0 if activation in ("logistic", "sigmoid") else 6.0
    weights, biases = [], []
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        bound = np.sqrt(factor / (fan_in + fan_out))
        weights.append(random_state.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype, copy=False))
        biases.append(random_state.uniform(-bound, bound, fan_out).astype(dtype, copy=False))
    return weights, biases


def _validate_data(estimator, X, y="no_validation", **kwargs):
    if _sklearn_validate_data is not None:
        return _sklearn_validate_data(estimator, X, y, **kwargs)
    return estimator._validate_data(X, y, **kwargs)  # pragma: no cover - scikit-learn < 1.6


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: parameters, the training loop, pickling."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="sgd", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=10, backend="cpu", dtype="float64", warmup_steps=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype
        self.warmup_steps = warmup_steps

    # --- parameters -----------------------------------------------------------------------

    def _checked_params(self):
        """The parameters, validated: scikit-learn estimators check them in fit, not __init__."""
        if self.solver != "sgd":
            raise ValueError(f"solver: fusedmlp trains with SGD only, so expected 'sgd'; got {self.solver!r}")
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, numbers.Integral) and not isinstance(hidden, (bool, np.bool_)):
            hidden = [hidden]
        elif isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__"):
            raise TypeError("hidden_layer_sizes: expected an integer or a sequence of integers >= 1; "
                            f"got {hidden!r}")
        hidden = [check_int(f"hidden_layer_sizes[{i}]", size, 1) for i, size in enumerate(hidden)]
        n_iter_no_change = self.n_iter_no_change
        if not (isinstance(n_iter_no_change, float) and n_iter_no_change == np.inf):
            n_iter_no_change = check_int("n_iter_no_change", n_iter_no_change, 1)
        if self.batch_size != "auto":
            check_int("batch_size", self.batch_size, 1)
        if self.verbose is not None and not isinstance(self.verbose, (numbers.Integral, bool, np.bool_)):
            raise TypeError(f"verbose: expected True, False or an integer; got {self.verbose!r}")
        params = dict(
            hidden=hidden,
            activation=ACTIVATIONS[check_choice("activation", self.activation, tuple(ACTIVATIONS))],
            alpha=check_float("alpha", self.alpha, 0.0),
            learning_rate=check_choice("learning_rate", self.learning_rate, LEARNING_RATES),
            learning_rate_init=check_float("learning_rate_init", self.learning_rate_init, 0.0),
            power_t=check_float("power_t", self.power_t, 0.0),
            max_iter=check_int("max_iter", self.max_iter, 1),
            shuffle=check_bool("shuffle", self.shuffle),
            tol=check_float("tol", self.tol, 0.0),
            warm_start=check_bool("warm_start", self.warm_start),
            momentum=check_float("momentum", self.momentum, 0.0, below=1.0),
            nesterov=check_bool("nesterovs_momentum", self.nesterovs_momentum),
            early_stopping=check_bool("early_stopping", self.early_stopping),
            validation_fraction=check_float("validation_fraction", self.validation_fraction, 0.0, below=1.0),
            n_iter_no_change=n_iter_no_change,
            backend=check_choice("backend", self.backend, BACKENDS),
            dtype=check_dtype(self.dtype),
            warmup_steps=check_int("warmup_steps", self.warmup_steps, 0),
        )
        if params["learning_rate_init"] == 0:
            raise ValueError("learning_rate_init: expected a number > 0; got 0.0")
        if params["early_stopping"] and params["validation_fraction"] == 0:
            raise ValueError("validation_fraction: early_stopping=True holds out this fraction of the "
                             "training data, so it must be > 0; got 0.0")
        return params

    # --- training -------------------------------------------------------------------------

    def fit(self, X, y):
        """Train on (X, y) for up to max_iter epochs (more with warm_start); returns self."""
        return self._fit(X, y, incremental=False)

    def _fit(self, X, y, incremental):
        params = self._checked_params()
        if incremental and params["early_stopping"]:
            raise ValueError("early_stopping: partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "coefs_") or (not params["warm_start"] and not incremental)
        X, targets = self._validate_input(X, y, incremental, first_pass, params["dtype"])
        n_outputs = self._n_outputs_of(targets)
        if not first_pass and n_outputs != self.n_outputs_:
            raise ValueError(f"y: the model has {self.n_outputs_} outputs but y has {n_outputs}; "
                             "fit from scratch (warm_start=False) to change them")
        random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(X.shape[1], n_outputs, params, random_state)
        elif not self._model_matches(params):
            raise ValueError("warm_start/partial_fit: hidden_layer_sizes, activation, backend and dtype must "
                             "stay as they were when the model was first fitted")
        self._train(X, targets, params, random_state, incremental)
        return self

    def _initialize(self, n_features, n_outputs, params, random_state):
        layer_sizes = [n_features] + params["hidden"] + [n_outputs]
        self._model = MLP(layer_sizes, activation=params["activation"], loss=self._loss_name(),
                          backend=params["backend"], dtype=params["dtype"], seed=0)
        self._model.set_parameters(*_sklearn_initial_parameters(layer_sizes, self.activation, random_state,
                                                                params["dtype"]))
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(layer_sizes)
        self.out_activation_ = self._out_activation()
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self._optimizer_started = False
        self._store_parameters()
        self._best_coefs, self._best_intercepts = self.coefs_, self.intercepts_
        if params["early_stopping"]:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _model_matches(self, params):
        model = self._model
        return (model.layer_sizes[1:-1] == params["hidden"] and model.activation == params["activation"]
                and model.backend == params["backend"] and model.dtype == params["dtype"])

    def _store_parameters(self):
        self.coefs_ = self._model.weights
        self.intercepts_ = self._model.biases

    def _gradient_scale(self):
        """scikit-learn's loss gradient over fusedmlp's for this model (see the module docstring)."""
        loss, k = self._model.loss, self.n_outputs_
        return {"cross_entropy": 1.0, "bce": float(k), "mse": k / 2.0}[loss]

    def _loss_scale(self):
        """scikit-learn's loss value over fusedmlp's (half the squared error; log-loss summed over
        the outputs of a logistic layer)."""
        loss, k = self._model.loss, self.n_outputs_
        return {"cross_entropy": 1.0, "bce": float(k), "mse": 0.5}[loss]

    def _train(self, X, targets, params, random_state, incremental):
        if not incremental or not self._optimizer_started:
            # scikit-learn's SGDOptimizer: fresh for every fit, kept across partial_fit calls.
            self._learning_rate = params["learning_rate_init"]
        early_stopping = params["early_stopping"]
        if early_stopping:
            # As scikit-learn: stratified for one logistic output only (not multiclass, not multilabel).
            stratify = self._stratify_labels(targets) if self.n_outputs_ == 1 else None
            X, X_val, targets, targets_val = train_test_split(
                X, targets, random_state=random_state, test_size=params["validation_fraction"], stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("validation_fraction: the validation set is too small (fewer than 2 samples); "
                                 "increase validation_fraction or the size of the data set")
        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(f"batch_size={self.batch_size} is larger than the {n_samples} training samples; "
                              "clipping it to that number", UserWarning, stacklevel=3)
            batch_size = min(self.batch_size, n_samples)
        gradient_scale, loss_scale = self._gradient_scale(), self._loss_scale()
        # scikit-learn's step is lr * (its gradient + alpha * W / batch_size); fusedmlp's is
        # lr' * (gradient + weight_decay * W) with gradient = its gradient / gradient_scale.
        weight_decay = params["alpha"] / (batch_size * gradient_scale)
        n_batches = -(-n_samples // batch_size)
        fresh_optimizer = not incremental or not self._optimizer_started
        self.n_iter_ = 0
        try:
            for _ in range(params["max_iter"]):
                squared_norm_before = self._squared_weight_norm() if params["alpha"] > 0 else 0.0
                # Each epoch's order comes from random_state, as scikit-learn's shuffles do.
                seed = int(random_state.randint(np.iinfo(np.int32).max)) if params["shuffle"] else None
                data_loss = self._run_epoch(X, targets, batch_size, self._learning_rate * gradient_scale,
                                            params, weight_decay, fresh_optimizer, seed)
                fresh_optimizer = False
                self._optimizer_started = True
                loss = loss_scale * data_loss
                if params["alpha"] > 0:
                    mean_squared_norm = 0.5 * (squared_norm_before + self._squared_weight_norm())
                    loss += 0.5 * params["alpha"] * mean_squared_norm * n_batches / n_samples
                self.n_iter_ += 1
                self.t_ += n_samples
                self.loss_curve_.append(loss)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
                self._update_no_improvement_count(early_stopping, X_val if early_stopping else None,
                                                  targets_val if early_stopping else None, params["tol"])
                if params["learning_rate"] == "invscaling":
                    self._learning_rate = params["learning_rate_init"] / (self.t_ + 1) ** params["power_t"]
                if self._no_improvement_count > params["n_iter_no_change"]:
                    what = "Validation score" if early_stopping else "Training loss"
                    message = (f"{what} did not improve more than tol={params['tol']:f} for "
                               f"{params['n_iter_no_change']} consecutive epochs.")
                    if self._trigger_stopping(message, params["learning_rate"]):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == params["max_iter"]:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({params['max_iter']}) reached and "
                                  "the optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        if early_stopping:
            self._model.set_parameters(self._best_coefs, self._best_intercepts)
        self._store_parameters()

    def _run_epoch(self, X, targets, batch_size, lr, params, weight_decay, fresh_optimizer, seed):
        """One epoch of SGD; returns fusedmlp's mean loss over it. fresh_optimizer: start new
        momentum buffers and restart the warmup (MLP.fit), else continue both (MLP.partial_fit)."""
        train = self._model.fit if fresh_optimizer else self._model.partial_fit
        momentum = params["momentum"]
        try:
            history = train(X, targets, epochs=1, batch_size=batch_size, lr=lr, momentum=momentum,
                            nesterov=params["nesterov"] and momentum > 0, weight_decay=weight_decay,
                            warmup_steps=params["warmup_steps"], shuffle=params["shuffle"], seed=seed)
        except DivergenceError as error:
            raise ValueError(
                f"Training diverged (non-finite loss or parameters) in epoch {self.n_iter_ + 1}, at lr="
                f"{error.lr:.6g}: lower learning_rate_init or scale the inputs and targets (e.g. with "
                "sklearn.preprocessing.StandardScaler). The model keeps the parameters from before that step."
            ) from error
        return float(history.epoch_loss[0])

    def _squared_weight_norm(self):
        return float(sum(np.dot(w.ravel().astype(np.float64), w.ravel()) for w in self._model.weights))

    def _trigger_stopping(self, message, learning_rate):
        """scikit-learn's SGDOptimizer.trigger_stopping: stop, or with learning_rate='adaptive'
        divide the rate by 5 until it falls to 1e-6."""
        if learning_rate != "adaptive":
            if self.verbose:
                print(message + " Stopping.")
            return True
        if self._learning_rate <= 1e-6:
            if self.verbose:
                print(message + " Learning rate too small. Stopping.")
            return True
        self._learning_rate /= 5.0
        if self.verbose:
            print(message + f" Setting learning rate to {self._learning_rate:f}")
        return False

    def _update_no_improvement_count(self, early_stopping, X_val, targets_val, tol):
        if early_stopping:
            score = self._validation_score(X_val, targets_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_coefs, self._best_intercepts = self._model.weights, self._model.biases
        else:
            loss = self.loss_curve_[-1]
            if loss > self.best_loss_ - tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if loss < self.best_loss_:
                self.best_loss_ = loss

    @property
    def mlp_(self):
        """The trained fusedmlp.MLP itself (not a copy): for to_torch(), save(), or its own
        predict. Its loss is cross_entropy (softmax), bce (logistic) or mse (identity), as
        out_activation_; changing its parameters changes the estimator's predictions but not
        coefs_ / intercepts_."""
        check_is_fitted(self)
        return self._model

    # --- inference ------------------------------------------------------------------------

    def _logits(self, X):
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False, dtype=self._model.dtype)
        return self._model.decision_function(X)

    # --- pickling -------------------------------------------------------------------------

    def __getstate__(self):
        state = dict(super().__getstate__())  # may be self.__dict__ itself
        model = state.pop("_model", None)
        if model is not None:
            # The native model does not pickle: keep what rebuilds it. The momentum buffers of a
            # partial_fit in progress are not kept; the next partial_fit starts them afresh.
            state["_model_description"] = dict(
                layer_sizes=model.layer_sizes, activation=model.activation, loss=model.loss,
                backend=model.backend, dtype=model.dtype.name, weights=model.weights, biases=model.biases)
            state["_optimizer_started"] = False
        return state

    def __setstate__(self, state):
        description = state.pop("_model_description", None)
        super().__setstate__(state)
        if description is not None:
            weights, biases = description.pop("weights"), description.pop("biases")
            self._model = MLP(**description)
            self._model.set_parameters(weights, biases)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"allow_nan": False}


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fusedmlp with scikit-learn's SGD and
    stopping rules; parameters and fitted attributes as sklearn.neural_network.MLPClassifier
    (solver="sgd"), plus backend, dtype and warmup_steps (see the module docstring).

    y: labels of any kind (ints, strings) for one output, softmax over the classes for three or
    more classes, one logistic output for two (predict_proba still gives shape (n, 2)); or a
    2-D 0/1 indicator matrix for multilabel (one logistic output per label).
    """

    def _loss_name(self):
        return "cross_entropy" if self._label_binarizer.y_type_ == "multiclass" else "bce"

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _n_outputs_of(self, targets):
        return len(self.classes_) if targets.ndim == 1 else targets.shape[1]

    def _validate_input(self, X, y, incremental, reset, dtype):
        X, y = _validate_data(self, X, y, multi_output=True, dtype=dtype, order="C", reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        # Which labels: as scikit-learn's MLPClassifier (a fresh fit defines them; warm_start
        # must keep them; partial_fit takes labels from its first call's classes).
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError("y: warm_start can only be used where y has the same classes as in the "
                                     f"previous call to fit. Previously got {self.classes_}, y has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"y: has classes not in classes_. classes_ has {self.classes_}; y has {classes}")
        indicator = self._label_binarizer.transform(y)
        if self._label_binarizer.y_type_ == "multiclass":
            return X, indicator.argmax(axis=1).astype(np.int64)
        return X, indicator.astype(X.dtype)

    def _stratify_labels(self, targets):
        return targets[:, 0]

    def _validation_score(self, X, targets):
        predicted = self._encoded_predictions(self._model.decision_function(X))
        if targets.ndim == 1:
            return float(np.mean(predicted == targets))
        return float(np.mean(np.all(predicted == (targets > 0.5), axis=1)))

    def _encoded_predictions(self, logits):
        if self._label_binarizer.y_type_ == "multiclass":
            return logits.argmax(axis=1)
        return logits > 0

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y), continuing the optimizer. classes (every label the model will
        ever see) is required on the first call and ignored afterwards."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predicted labels, shape (n,); an indicator matrix (n, n_labels) for multilabel."""
        encoded = self._encoded_predictions(self._logits(X))
        if self._label_binarizer.y_type_ == "multiclass":
            return self.classes_[encoded]
        return self._label_binarizer.inverse_transform(encoded.astype(np.int64))

    def predict_proba(self, X):
        """Class probabilities, shape (n, n_classes) in the order of classes_ (for two classes,
        columns 1 - p and p of the single logistic output)."""
        check_is_fitted(self)
        probabilities = self._model.forward(_validate_data(self, X, reset=False, dtype=self._model.dtype))
        if self._label_binarizer.y_type_ == "binary":
            positive = probabilities[:, 0]
            return np.column_stack([1 - positive, positive])
        return probabilities

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        probabilities = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(probabilities, out=probabilities)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"allow_nan": False, "multilabel": True}


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor (squared error) trained by fusedmlp with scikit-learn's
    SGD and stopping rules; parameters and fitted attributes as
    sklearn.neural_network.MLPRegressor (solver="sgd"), plus backend, dtype and warmup_steps (see
    the module docstring). y: (n,) or (n, n_outputs); predict returns (n,) for a single output,
    like scikit-learn, in the estimator's dtype."""

    def _loss_name(self):
        return "mse"

    def _out_activation(self):
        return "identity"

    def _n_outputs_of(self, targets):
        return targets.shape[1]

    def _validate_input(self, X, y, incremental, reset, dtype):
        X, y = _validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=dtype, order="C", reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        targets = np.ascontiguousarray(y.reshape(len(y), -1), dtype=dtype)
        return X, targets

    def _stratify_labels(self, targets):
        return None

    def _validation_score(self, X, targets):
        predicted = self._model.decision_function(X)
        if not np.isfinite(predicted).all():
            return np.nan
        return float(r2_score(targets, predicted))

    def partial_fit(self, X, y):
        """One epoch over (X, y), continuing the optimizer."""
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predicted values, shape (n,) for one output, else (n, n_outputs)."""
        logits = self._logits(X)
        return logits.ravel() if logits.shape[1] == 1 else logits

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"allow_nan": False, "multioutput": True}
