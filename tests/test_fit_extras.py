"""fit / partial_fit beyond plain SGD: validation data and split, early stopping with restored
weights, callbacks, partial_fit continuing one fit, the progress bar, divergence, History."""

import copy
import json
import math
import pickle
import sys

import numpy as np
import pytest

import fusedmlp as fm
from fusedmlp import schedules
from fusedmlp.errors import DivergenceError
from fusedmlp.history import EpochInfo, History
from conftest import AVAILABLE_BACKENDS, relative_error


def classification(n=150, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, (X @ rng.standard_normal((d, k))).argmax(axis=1)


def parameters(net):
    return net.weights + net.biases


def assert_same_parameters(a, b):
    assert len(a) == len(b)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)


class Recorder:
    """A callback keeping every EpochInfo and a copy of the parameters after each epoch."""

    def __init__(self, stop_at=None):
        self.infos, self.parameters, self.stop_at = [], [], stop_at

    def __call__(self, net, info):
        self.infos.append(info)
        self.parameters.append(parameters(net))
        return info.epoch == self.stop_at


# --- validation --------------------------------------------------------------------------------

def test_validation_data_is_scored_after_every_epoch(backend):
    X, y = classification()
    X_val, y_val = classification(40, seed=1)
    net = fm.MLP([6, 12, 3], backend=backend, dtype="float64", seed=0)
    measured = []
    hist = net.fit(X, y, epochs=4, batch_size=16, lr=0.1, validation_data=(X_val, y_val),
                   callbacks=lambda m, info: measured.append((m.loss_and_grad(X_val, y_val)[0], m.score(X_val, y_val))))
    assert hist.val_loss.shape == hist.val_score.shape == (4,)
    np.testing.assert_allclose(hist.val_loss, [loss for loss, _ in measured], rtol=1e-12)
    np.testing.assert_array_equal(hist.val_score, [score for _, score in measured])
    assert hist.val_loss[-1] < hist.val_loss[0]


def test_without_validation_the_validation_records_are_empty(backend):
    X, y = classification()
    hist = fm.MLP([6, 8, 3], backend=backend, seed=0).fit(X, y, epochs=2)
    assert hist.val_loss.shape == hist.val_score.shape == (0,) and not hist.has_validation


@pytest.mark.parametrize("fraction,held_out", [(0.2, 21), (0.5, 51), (0.01, 2), (0.98, 100), (0.7, 72)])
def test_validation_fraction_holds_out_a_seeded_subset(backend, fraction, held_out):
    X, y = classification(102)
    net = fm.MLP([6, 8, 3], backend=backend, dtype="float64", seed=0)
    recorder = Recorder()
    hist = net.fit(X, y, epochs=2, batch_size=10, validation_fraction=fraction, seed=5, callbacks=recorder)
    assert hist.steps == 2 * math.ceil((102 - held_out) / 10)
    # The documented split: a permutation from default_rng(seed) drawn first; its last part is held out.
    val_rows = np.sort(np.random.default_rng(5).permutation(102)[102 - held_out:])
    final = fm.MLP([6, 8, 3], backend=backend, dtype="float64", seed=0)
    final.set_parameters(recorder.parameters[-1][:2], recorder.parameters[-1][2:])
    assert hist.val_loss[-1] == pytest.approx(final.loss_and_grad(X[val_rows], y[val_rows])[0], rel=1e-12)
    assert hist.val_score[-1] == final.score(X[val_rows], y[val_rows])


def test_validation_split_is_deterministic_and_draws_from_the_models_generator(backend):
    X, y = classification(90)
    runs = []
    for _ in range(2):
        net = fm.MLP([6, 8, 3], backend=backend, seed=3)
        generator = copy.deepcopy(net._rng)
        runs.append((net.fit(X, y, epochs=2, batch_size=8, validation_fraction=0.3), parameters(net)))
    np.testing.assert_array_equal(runs[0][0].val_loss, runs[1][0].val_loss)
    assert_same_parameters(runs[0][1], runs[1][1])
    # Without seed the split comes from the model's generator, as the shuffles do.
    val_rows = np.sort(generator.permutation(90)[90 - 27:])
    twin = fm.MLP([6, 8, 3], backend=backend, seed=3)
    twin.set_parameters(runs[0][1][:2], runs[0][1][2:])
    assert runs[0][0].val_loss[-1] == pytest.approx(twin.loss_and_grad(X[val_rows], y[val_rows])[0], rel=1e-5)
    other = fm.MLP([6, 8, 3], backend=backend, seed=3).fit(X, y, epochs=2, batch_size=8, validation_fraction=0.3,
                                                             seed=1)
    assert not np.array_equal(other.val_loss, runs[0][0].val_loss)


BAD_FIT = [
    (dict(validation_fraction=0.2, validation_data=None), None, None),
    (dict(validation_fraction=1.0), ValueError, r"^validation_fraction: expected a finite number in \[0.0, 1.0\); got 1.0"),
    (dict(validation_fraction=-0.1), ValueError, r"^validation_fraction: expected a finite number in \[0.0, 1.0\)"),
    (dict(validation_fraction="0.2"), TypeError, r"^validation_fraction: expected a finite number"),
    (dict(validation_fraction=0.2, validation_data="VAL"), ValueError,
     r"^validation_fraction: give validation_data or validation_fraction, not both"),
    (dict(validation_data=[1, 2, 3]), ValueError, r"^validation_data: expected a pair \(X, y\); got a sequence of 3"),
    (dict(validation_data=np.zeros((2, 6))), TypeError, r"^validation_data: expected a pair \(X, y\); got an array"),
    (dict(validation_data="VAL_WRONG_WIDTH"), ValueError,
     r"^validation_data\[0\]: expected 6 features \(columns\); got shape \(5, 4\)"),
    (dict(validation_data="VAL_WRONG_TARGETS"), ValueError,
     r"^validation_data\[1\]: expected 4 targets, one per sample of validation_data\[0\]; got shape \(5,\)"),
    (dict(validation_data="VAL_NAN"), ValueError, r"^validation_data\[0\]: expected finite values"),
    (dict(validation_data="VAL_CLASS"), ValueError, r"^validation_data\[1\]: expected class indices in \[0, 3\)"),
    (dict(early_stopping=1), TypeError, r"^early_stopping: expected True or False; got 1"),
    (dict(patience=0), ValueError, r"^patience: expected an integer >= 1; got 0"),
    (dict(min_delta=-1e-3), ValueError, r"^min_delta: expected a finite number >= 0.0"),
    (dict(restore_best_weights=None), TypeError, r"^restore_best_weights: expected True or False"),
    (dict(callbacks=[print, 3]), TypeError, r"^callbacks\[1\]: expected a callable callback\(model, info\); got 3"),
    (dict(callbacks="print"), TypeError, r"^callbacks: expected a callable or a sequence of callables"),
    (dict(progress="yes"), TypeError, r"^progress: expected True or False"),
    (dict(on_divergence="ignore"), ValueError, r"^on_divergence: expected one of raise, stop; got 'ignore'"),
    (dict(lr=[0.1]), TypeError, r"^lr: expected a finite number >= 0.0; got \[0.1\] \(list\); or a schedule"),
    (dict(validation_fraction=0.6, batch_size=5, drop_last=True), ValueError,
     r"^batch_size: with drop_last=True, expected at most the 4 samples of X left after validation_fraction "
     r"held out 6; got 5"),
]


def resolve(kwargs):
    X_val = {"VAL": (np.zeros((5, 6)), np.zeros(5, int)), "VAL_WRONG_WIDTH": (np.zeros((5, 4)), np.zeros(5, int)),
             "VAL_WRONG_TARGETS": (np.zeros((4, 6)), np.zeros(5, int)),
             "VAL_NAN": (np.full((5, 6), np.nan), np.zeros(5, int)),
             "VAL_CLASS": (np.zeros((5, 6)), np.full(5, 3))}
    return {k: X_val.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}


@pytest.mark.parametrize("kwargs,error,message", [c for c in BAD_FIT if c[1]], ids=lambda c: str(c)[:60])
def test_bad_training_arguments_are_named_and_change_nothing(backend, kwargs, error, message):
    X, y = classification(10)
    net = fm.MLP([6, 8, 3], backend=backend, seed=0)
    twin = fm.MLP([6, 8, 3], backend=backend, seed=0)
    with pytest.raises(error, match=message):
        net.fit(X, y, epochs=2, **resolve(kwargs))
    # Neither the parameters nor the generator moved: the next fit is the untouched twin's.
    assert_same_parameters(parameters(net), parameters(twin))
    net.fit(X, y, epochs=1, batch_size=3, momentum=0.5)
    twin.fit(X, y, epochs=1, batch_size=3, momentum=0.5)
    assert_same_parameters(parameters(net), parameters(twin))


def test_validation_fraction_of_a_round_count_is_that_count(backend):
    X, y = classification(10)
    hist = fm.MLP([6, 8, 3], backend=backend, seed=0).fit(X, y, epochs=1, batch_size=1, validation_fraction=0.7)
    assert hist.steps == 3  # 0.7 * 10 is 7.000000000000001 in floating point; 7 are held out


def test_validation_fraction_must_leave_training_samples(backend):
    X, y = classification(2)
    with pytest.raises(ValueError, match=r"^validation_fraction: holding out 2 of the 2 samples of X leaves none"):
        fm.MLP([6, 8, 3], backend=backend, seed=0).fit(X, y, validation_fraction=0.6)


# --- early stopping -----------------------------------------------------------------------------

def opposed_validation(X, y):
    """Validation labels that training makes worse: every class shifted by one."""
    return X[:60], (y[:60] + 1) % 3


@pytest.mark.parametrize("restore", [True, False])
def test_early_stopping_stops_and_restores_the_best_epoch(backend, restore):
    X, y = classification()
    net = fm.MLP([6, 12, 3], backend=backend, dtype="float64", seed=0)
    recorder = Recorder()
    hist = net.fit(X, y, epochs=50, batch_size=16, lr=0.1, validation_data=opposed_validation(X, y),
                   early_stopping=True, patience=3, restore_best_weights=restore, callbacks=recorder)
    assert hist.stopped_early and hist.stop_reason == "early_stopping"
    assert hist.epochs == hist.best_epoch + 3 + 1 < 50
    assert hist.val_loss[hist.best_epoch] == hist.val_loss.min()
    assert (hist.val_loss[hist.best_epoch + 1:] >= hist.val_loss[hist.best_epoch]).all()
    assert len(recorder.parameters) == hist.epochs
    expected = recorder.parameters[hist.best_epoch] if restore else recorder.parameters[-1]
    assert_same_parameters(parameters(net), expected)
    if restore:
        assert not np.array_equal(parameters(net)[0], recorder.parameters[-1][0])


def test_early_stopping_without_validation_watches_the_training_loss(backend):
    X, y = classification()
    net = fm.MLP([6, 12, 3], backend=backend, seed=0)
    recorder = Recorder()
    # No epoch improves on the first by 10: the first is best and patience runs out.
    hist = net.fit(X, y, epochs=20, lr=0.1, early_stopping=True, patience=4, min_delta=10.0, callbacks=recorder)
    assert hist.best_epoch == 0 and hist.epochs == 5 and hist.stop_reason == "early_stopping"
    assert hist.epoch_loss[-1] < hist.epoch_loss[0]  # it improved, by less than min_delta
    assert_same_parameters(parameters(net), recorder.parameters[0])


def test_min_delta_counts_only_real_improvements(backend):
    X, y = classification()
    net = fm.MLP([6, 12, 3], backend=backend, dtype="float64", seed=0)
    hist = net.fit(X, y, epochs=30, batch_size=16, lr=0.02, early_stopping=True, patience=2, min_delta=0.02)
    losses, best, best_epoch, waited = hist.epoch_loss, math.inf, None, 0
    for epoch, loss in enumerate(losses):  # the rule, replayed on the recorded losses
        if loss < best - 0.02:
            best, best_epoch, waited = loss, epoch, 0
        else:
            waited += 1
        if waited >= 2:
            break
    assert hist.best_epoch == best_epoch and hist.epochs == epoch + 1
    assert hist.stopped_early == (hist.epochs < 30)


def test_without_early_stopping_best_epoch_is_reported_and_nothing_restored(backend):
    X, y = classification()
    net = fm.MLP([6, 12, 3], backend=backend, seed=0)
    recorder = Recorder()
    hist = net.fit(X, y, epochs=6, lr=0.1, validation_data=opposed_validation(X, y), callbacks=recorder)
    assert hist.epochs == 6 and not hist.stopped_early and hist.stop_reason is None
    assert hist.best_epoch == int(np.argmin(hist.val_loss))
    assert_same_parameters(parameters(net), recorder.parameters[-1])


# --- callbacks ----------------------------------------------------------------------------------

def test_callbacks_see_every_epoch(backend):
    X, y = classification(100)
    net = fm.MLP([6, 8, 3], backend=backend, seed=0)
    first, second = Recorder(), Recorder()
    hist = net.fit(X, y, epochs=4, batch_size=30, lr=schedules.exponential_decay(0.1, 0.9),
                   callbacks=[first, second])
    assert first.infos == second.infos and len(first.infos) == 4
    for epoch, info in enumerate(first.infos):
        assert isinstance(info, EpochInfo)
        assert info.epoch == epoch and info.global_step == 4 * (epoch + 1)
        assert info.loss == hist.epoch_loss[epoch]
        assert info.lr == hist.lr[4 * epoch + 3] == pytest.approx(0.1 * 0.9 ** (4 * epoch + 3))
        assert info.seconds == hist.epoch_time[epoch] > 0
        assert info.samples_per_s == pytest.approx(100 / info.seconds) and info.samples_per_s == hist.samples_per_s[epoch]
        assert info.val_loss is None and info.val_score is None


def test_a_callback_returning_true_stops_after_that_epoch(backend):
    X, y = classification()
    net = fm.MLP([6, 8, 3], backend=backend, seed=0)
    stopper, listener = Recorder(stop_at=2), Recorder()
    hist = net.fit(X, y, epochs=10, callbacks=[stopper, listener])
    assert hist.epochs == 3 and hist.stopped_early and hist.stop_reason == "callback"
    assert [i.epoch for i in listener.infos] == [0, 1, 2]  # the others still saw the last epoch
    assert_same_parameters(parameters(net), listener.parameters[-1])
    last = fm.MLP([6, 8, 3], backend=backend, seed=0).fit(X, y, epochs=3, callbacks=Recorder(stop_at=2))
    assert last.epochs == 3 and not last.stopped_early and last.stop_reason is None


def test_a_callback_error_propagates(backend):
    X, y = classification()

    def broken(net, info):
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        fm.MLP([6, 8, 3], backend=backend, seed=0).fit(X, y, epochs=2, callbacks=broken)


# --- partial_fit ----------------------------------------------------------------------------------

PARTIAL_VARIANTS = [
    dict(lr=0.05, momentum=0.9),
    dict(lr=schedules.cosine_decay(0.1, 40, 0.001), momentum=0.9, nesterov=True, weight_decay=1e-3, warmup_steps=7),
]


@pytest.mark.parametrize("kwargs", PARTIAL_VARIANTS, ids=["momentum", "schedule+warmup+nesterov"])
def test_partial_fit_continues_one_fit(backend, kwargs):
    X, y = classification(130)
    whole = fm.MLP([6, 16, 3], activation="tanh", backend=backend, dtype="float64", seed=2)
    pieces = fm.MLP([6, 16, 3], activation="tanh", backend=backend, dtype="float64", seed=2)
    restarted = fm.MLP([6, 16, 3], activation="tanh", backend=backend, dtype="float64", seed=2)
    one = whole.fit(X, y, epochs=5, batch_size=16, **kwargs)
    parts = [pieces.fit(X, y, epochs=2, batch_size=16, **kwargs),
             pieces.partial_fit(X, y, epochs=1, batch_size=16, **kwargs),
             pieces.partial_fit(X, y, epochs=2, batch_size=16, **kwargs)]
    np.testing.assert_array_equal(np.concatenate([h.lr for h in parts]), one.lr)
    np.testing.assert_array_equal(np.concatenate([h.step_loss for h in parts]), one.step_loss)
    assert_same_parameters(parameters(pieces), parameters(whole))
    assert pieces.global_step == whole.global_step == 45
    # A second fit() instead restarts momentum and the schedule: a different trajectory.
    restarted.fit(X, y, epochs=2, batch_size=16, **kwargs)
    again = restarted.fit(X, y, epochs=3, batch_size=16, **kwargs)
    np.testing.assert_array_equal(again.lr, one.lr[:27])
    assert restarted.global_step == 27
    assert not np.array_equal(restarted.weights[0], whole.weights[0])


def test_partial_fit_continues_alike_on_both_backends():
    X, y = classification(100)
    nets = {b: fm.MLP([6, 16, 3], activation="tanh", backend=b, dtype="float64", seed=2) for b in AVAILABLE_BACKENDS}
    for net in nets.values():
        net.partial_fit(X, y, epochs=2, batch_size=16, lr=schedules.step_decay(0.1, 5, 0.5), momentum=0.9)
        net.partial_fit(X, y, epochs=2, batch_size=16, lr=schedules.step_decay(0.1, 5, 0.5), momentum=0.9)
    for a, b in zip(parameters(nets["cpu"]), parameters(nets["numpy"])):
        assert relative_error(a, b) < 1e-8


def test_partial_fit_on_a_new_model_is_fit(backend):
    X, y = classification()
    a = fm.MLP([6, 8, 3], backend=backend, seed=0)
    b = fm.MLP([6, 8, 3], backend=backend, seed=0)
    a.partial_fit(X, y, epochs=2, momentum=0.9, warmup_steps=4)
    b.fit(X, y, epochs=2, momentum=0.9, warmup_steps=4)
    assert_same_parameters(parameters(a), parameters(b))


def test_partial_fit_streams_chunks_with_validation(backend):
    X, y = classification(200)
    net = fm.MLP([6, 12, 3], backend=backend, seed=0)
    for start in range(0, 160, 40):
        hist = net.partial_fit(X[start:start + 40], y[start:start + 40], batch_size=10, lr=0.1,
                               validation_data=(X[160:], y[160:]))
        assert hist.steps == 4 and hist.val_score.shape == (1,)
    assert net.global_step == 16
    assert net.score(X[160:], y[160:]) > 0.6


# --- progress bar ---------------------------------------------------------------------------------

def test_progress_bar_writes_to_stderr_only_when_asked(backend, capsys):
    X, y = classification()
    net = fm.MLP([6, 8, 3], backend=backend, seed=0)
    net.fit(X, y, epochs=3)
    assert capsys.readouterr() == ("", "")
    net.fit(X, y, epochs=3, progress=True, validation_data=(X, y))
    out, err = capsys.readouterr()
    assert out == ""
    for text in ("fit", "3/3", "loss=", "val_loss=", "samples/s="):
        assert text in err, err
    net.partial_fit(X, y, epochs=2, progress=True)
    assert "partial_fit" in capsys.readouterr().err


def test_progress_without_tqdm_is_a_clear_import_error(backend, monkeypatch):
    X, y = classification()
    net = fm.MLP([6, 8, 3], backend=backend, seed=0)
    twin = fm.MLP([6, 8, 3], backend=backend, seed=0)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # what `import tqdm` meets when it is not installed
    with pytest.raises(ImportError, match=r"progress=True needs the tqdm package: pip install tqdm"):
        net.fit(X, y, epochs=2, progress=True)
    net.fit(X, y, epochs=2)  # without the bar tqdm is not needed, and nothing moved before
    twin.fit(X, y, epochs=2)
    assert_same_parameters(parameters(net), parameters(twin))


# --- divergence -----------------------------------------------------------------------------------

def test_a_loss_that_overflows_raises_before_the_step(backend):
    X, y = classification(40)
    net = fm.MLP([6, 8, 1], loss="mse", backend=backend, dtype="float64", seed=0)
    before = parameters(net)
    with pytest.raises(DivergenceError) as caught:
        net.fit(X, np.full(40, 1e200), epochs=3, batch_size=8, lr=0.05)
    error = caught.value
    assert isinstance(error, ArithmeticError)
    assert (error.epoch, error.step, error.lr, error.loss) == (0, 0, 0.05, math.inf)
    assert str(error).startswith("training diverged at epoch 0, step 0 (global), lr=0.05: the loss is not finite")
    assert error.history.diverged and error.history.steps == 1 and error.history.epochs == 0
    assert_same_parameters(parameters(net), before)
    assert net.global_step == 0
    copy_of = pickle.loads(pickle.dumps(error))
    assert (copy_of.epoch, copy_of.step, copy_of.lr, copy_of.loss, str(copy_of)) == \
           (0, 0, 0.05, math.inf, str(error))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_huge_learning_rate_diverges_with_the_parameters_of_the_step_before(backend, dtype):
    X, y = classification(64)
    net = fm.MLP([6, 16, 3], backend=backend, dtype=dtype, seed=0)
    hist = net.fit(X, y, epochs=100, batch_size=64, lr=1e30, shuffle=False, on_divergence="stop")
    assert hist.diverged and hist.stopped_early and hist.stop_reason == "divergence"
    diverged_at = hist.steps - 1  # one step per epoch: step t is epoch t
    assert 1 <= diverged_at < 100 and hist.epochs == diverged_at
    assert hist.lr[-1] == 1e30 and np.isfinite(hist.step_loss[:-1]).all()
    assert all(np.isfinite(p).all() for p in parameters(net))
    assert net.global_step == diverged_at
    twin = fm.MLP([6, 16, 3], backend=backend, dtype=dtype, seed=0)
    twin.fit(X, y, epochs=diverged_at, batch_size=64, lr=1e30, shuffle=False)
    assert_same_parameters(parameters(net), parameters(twin))
    # on_divergence="raise" names the same step, with the same parameters kept.
    raiser = fm.MLP([6, 16, 3], backend=backend, dtype=dtype, seed=0)
    with pytest.raises(DivergenceError) as caught:
        raiser.fit(X, y, epochs=100, batch_size=64, lr=1e30, shuffle=False)
    assert (caught.value.epoch, caught.value.step, caught.value.lr) == (diverged_at, diverged_at, 1e30)
    assert caught.value.loss == hist.step_loss[-1] or math.isnan(caught.value.loss) and math.isnan(hist.step_loss[-1])
    assert_same_parameters(parameters(raiser), parameters(twin))


def test_divergence_mid_epoch_in_partial_fit_counts_global_steps(backend):
    X, y = classification(100)
    net = fm.MLP([6, 16, 3], backend=backend, dtype="float64", seed=0)
    twin = fm.MLP([6, 16, 3], backend=backend, dtype="float64", seed=0)
    for model in (net, twin):
        model.fit(X, y, epochs=2, batch_size=10, lr=0.05)
    assert net.global_step == 20
    with pytest.raises(DivergenceError) as caught:
        net.partial_fit(X, y, epochs=50, batch_size=10, lr=1e30, shuffle=False)
    error = caught.value
    assert error.step == net.global_step and error.step >= 21  # one step at 1e30 is finite
    epochs, steps = divmod(error.step - 20, 10)
    assert error.epoch == epochs
    assert all(np.isfinite(p).all() for p in parameters(net))
    # The twin applies exactly the steps before the divergent one: whole epochs, then the rest.
    twin.partial_fit(X, y, epochs=epochs, batch_size=10, lr=1e30, shuffle=False)
    if steps:
        twin.partial_fit(X[:10 * steps], y[:10 * steps], epochs=1, batch_size=10, lr=1e30, shuffle=False)
    assert twin.global_step == net.global_step
    assert_same_parameters(parameters(net), parameters(twin))


def test_divergence_with_early_stopping_restores_the_best_epoch(backend):
    X, y = classification(96)
    net = fm.MLP([6, 16, 3], backend=backend, dtype="float64", seed=0)
    recorder = Recorder()
    # 0.05 for 5 epochs of 4 steps, then 5e28: divergence soon after.
    hist = net.fit(X, y, epochs=30, batch_size=24, lr=schedules.step_decay(0.05, 20, gamma=1e30),
                   early_stopping=True, patience=30, on_divergence="stop", callbacks=recorder)
    assert hist.diverged and hist.epochs >= 5
    assert hist.best_epoch == int(np.argmin(hist.epoch_loss))
    assert_same_parameters(parameters(net), recorder.parameters[hist.best_epoch])


# --- History --------------------------------------------------------------------------------------

def test_history_is_read_only_and_round_trips_through_json(backend):
    X, y = classification()
    hist = fm.MLP([6, 8, 3], backend=backend, seed=0).fit(X, y, epochs=3, validation_fraction=0.2,
                                                          early_stopping=True)
    for name in ("step_loss", "lr", "epoch_loss", "epoch_time", "samples_per_s", "val_loss", "val_score"):
        array = getattr(hist, name)
        assert array.dtype == np.float64 and not array.flags.writeable
    with pytest.raises(AttributeError):
        hist.best_epoch = 1
    record = json.loads(json.dumps(hist.as_dict()))
    back = History.from_dict(record)
    for name in ("step_loss", "lr", "epoch_loss", "val_loss", "val_score"):
        np.testing.assert_array_equal(getattr(back, name), getattr(hist, name))
    assert (back.best_epoch, back.stopped_early, back.diverged) == (hist.best_epoch, False, False)
    assert repr(hist).startswith("History(epochs=3, steps=6, epoch_loss=") and "val_loss=" in repr(hist)


def test_history_as_dict_can_be_strict_json():
    hist = History(step_loss=[0.5, np.inf], lr=[0.1, 0.1], epoch_loss=[0.5], epoch_time=[0.01],
                   samples_per_s=[100.0], diverged=True, stop_reason="divergence", stopped_early=True)
    assert json.loads(json.dumps(hist.as_dict(json_safe=True), allow_nan=False))["step_loss"] == [0.5, None]
    assert hist.as_dict()["step_loss"] == [0.5, math.inf]
    with pytest.raises(ValueError, match=r"^lr: expected one rate per step \(2\); got 1"):
        History(step_loss=[0.5, 0.4], lr=[0.1], epoch_loss=[], epoch_time=[])
    with pytest.raises(ValueError, match=r"^record: unknown History fields \['loss'\]"):
        History.from_dict({"loss": []})
