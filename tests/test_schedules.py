"""Learning-rate schedules: each against its formula computed here step by step with math,
composition with warmup, argument checks, and fit() handing the schedule's rates to both
backends."""

import math
import pickle

import numpy as np
import pytest

import fusedmlp as fm
from fusedmlp import schedules
from conftest import AVAILABLE_BACKENDS, relative_error


def by_hand(formula, first_step, count):
    return np.array([formula(t) for t in range(first_step, first_step + count)])


CASES = [
    (schedules.constant(0.3), lambda t: 0.3),
    (schedules.step_decay(0.5, step_size=7, gamma=0.5), lambda t: 0.5 * 0.5 ** (t // 7)),
    (schedules.step_decay(0.2, 3), lambda t: 0.2 * 0.1 ** (t // 3)),
    (schedules.exponential_decay(0.1, 0.97), lambda t: 0.1 * 0.97 ** t),
    (schedules.cosine_decay(0.4, 50), lambda t: 0.4 * (1 + math.cos(math.pi * min(t, 50) / 50)) / 2),
    (schedules.cosine_decay(0.4, 33, min_lr=0.01),
     lambda t: 0.01 + 0.39 * (1 + math.cos(math.pi * min(t, 33) / 33)) / 2),
    (schedules.linear_decay(0.2, 40), lambda t: 0.2 * (1 - min(t, 40) / 40)),
    (schedules.linear_decay(0.2, 40, end_lr=0.05), lambda t: 0.2 - 0.15 * min(t, 40) / 40),
]


@pytest.mark.parametrize("schedule,formula", CASES, ids=lambda c: repr(c) if isinstance(c, schedules.Schedule) else "")
@pytest.mark.parametrize("first_step,count", [(0, 120), (37, 5), (200, 3), (5, 0)])
def test_rates_follow_the_formula(schedule, formula, first_step, count):
    rates = schedule.rates(first_step, count)
    assert rates.dtype == np.float64 and rates.shape == (count,)
    np.testing.assert_allclose(rates, by_hand(formula, first_step, count), rtol=1e-14, atol=1e-17)
    if count:
        assert schedule(first_step) == pytest.approx(formula(first_step), rel=1e-14, abs=1e-17)


def test_decays_reach_their_end_and_stay_there():
    cosine = schedules.cosine_decay(1.0, 10, min_lr=0.1)
    assert cosine(0) == 1.0 and cosine(5) == pytest.approx(0.55)
    np.testing.assert_array_equal(cosine.rates(10, 100), 0.1)
    linear = schedules.linear_decay(1.0, 4, end_lr=0.2)
    np.testing.assert_allclose(linear.rates(0, 7), [1.0, 0.8, 0.6, 0.4, 0.2, 0.2, 0.2])
    np.testing.assert_allclose(schedules.step_decay(1.0, 2, 0.5).rates(0, 6), [1, 1, 0.5, 0.5, 0.25, 0.25])


def test_rates_in_pieces_equal_rates_at_once():
    schedule = schedules.warmup(schedules.cosine_decay(0.3, 40, 0.01), 9)
    whole = schedule.rates(0, 80)
    pieces = np.concatenate([schedule.rates(start, 7) for start in range(0, 80, 7)])[:80]
    np.testing.assert_array_equal(pieces, whole)


def test_warmup_ramps_to_the_first_rate_then_runs_the_schedule_from_its_step_zero():
    inner = schedules.cosine_decay(0.4, 20, min_lr=0.04)
    schedule = schedules.warmup(inner, 5)
    rates = schedule.rates(0, 40)
    np.testing.assert_allclose(rates[:5], [0.4 * (t + 1) / 5 for t in range(5)], rtol=1e-15)
    expected_after = [0.04 + 0.36 * (1 + math.cos(math.pi * min(t - 5, 20) / 20)) / 2 for t in range(5, 40)]
    np.testing.assert_allclose(rates[5:], expected_after, rtol=1e-14)
    assert rates[24] > 0.04 and rates[25] == pytest.approx(0.04)  # the cosine ends at step 5 + 20


def test_warmup_of_a_float_is_the_designs_linear_warmup():
    rates = schedules.warmup(0.2, 5).rates(0, 8)
    np.testing.assert_allclose(rates, [0.04, 0.08, 0.12, 0.16, 0.2, 0.2, 0.2, 0.2])
    np.testing.assert_array_equal(schedules.warmup_rates(0.2, 5, 3, 4), rates[3:7])
    np.testing.assert_array_equal(schedules.warmup(0.2, 0).rates(0, 3), [0.2, 0.2, 0.2])
    np.testing.assert_array_equal(schedules.warmup(schedules.exponential_decay(1.0, 0.5), 0).rates(0, 3),
                                  [1.0, 0.5, 0.25])


def test_warmups_compose():
    twice = schedules.warmup(schedules.warmup(1.0, 2), 3)
    # Outer warmup ramps to the inner schedule's first rate (0.5), then the inner warmup runs.
    np.testing.assert_allclose(twice.rates(0, 7), [0.5 / 3, 1.0 / 3, 0.5, 0.5, 1.0, 1.0, 1.0])


class Halving:
    """A user's own schedule: anything with rates(first_step, count)."""

    def rates(self, first_step, count):
        return 1.0 / 2.0 ** np.arange(first_step, first_step + count)


def test_any_object_with_rates_is_a_schedule():
    np.testing.assert_allclose(schedules.warmup(Halving(), 2).rates(0, 5), [0.5, 1.0, 1.0, 0.5, 0.25])
    assert schedules.as_schedule(Halving()).__class__ is Halving
    assert schedules.as_schedule(0.5) == schedules.constant(0.5)


def test_schedules_are_immutable_comparable_and_print_as_their_call():
    schedule = schedules.warmup(schedules.cosine_decay(0.1, 100, min_lr=0.001), 10)
    assert repr(schedule) == "warmup(cosine_decay(lr=0.1, total_steps=100, min_lr=0.001), steps=10)"
    assert eval(repr(schedule), vars(schedules)) == schedule
    assert schedule == schedules.warmup(schedules.cosine_decay(0.1, 100, 0.001), 10)
    assert schedule != schedules.warmup(schedules.cosine_decay(0.1, 100, 0.002), 10)
    assert pickle.loads(pickle.dumps(schedule)) == schedule
    with pytest.raises(AttributeError):
        schedule.steps = 3
    for made in (schedules.constant(1), schedules.step_decay(1, 2), schedules.exponential_decay(1, 0.5),
                 schedules.linear_decay(1, 3, 0.5)):
        assert eval(repr(made), vars(schedules)) == made


BAD = [
    (lambda: schedules.constant(-0.1), ValueError, r"^lr: expected a finite number >= 0.0; got -0.1"),
    (lambda: schedules.constant(float("nan")), ValueError, r"^lr: expected a finite number"),
    (lambda: schedules.constant("0.1"), TypeError, r"^lr: expected a finite number"),
    (lambda: schedules.step_decay(0.1, 0), ValueError, r"^step_size: expected an integer >= 1; got 0"),
    (lambda: schedules.step_decay(0.1, 2.5), TypeError, r"^step_size: expected an integer >= 1; got 2.5"),
    (lambda: schedules.step_decay(0.1, 2, gamma=0), ValueError, r"^gamma: expected a finite number > 0; got 0.0"),
    (lambda: schedules.step_decay(0.1, 2, gamma=-1), ValueError, r"^gamma: expected a finite number >= 0.0"),
    (lambda: schedules.exponential_decay(0.1, float("inf")), ValueError, r"^gamma: expected a finite number"),
    (lambda: schedules.cosine_decay(0.1, 0), ValueError, r"^total_steps: expected an integer >= 1; got 0"),
    (lambda: schedules.cosine_decay(0.1, 10, min_lr=0.2), ValueError, r"^min_lr: expected at most lr=0.1"),
    (lambda: schedules.cosine_decay(0.1, 10, min_lr=-1), ValueError, r"^min_lr: expected a finite number >= 0.0"),
    (lambda: schedules.linear_decay(0.1, None), TypeError, r"^total_steps: expected an integer >= 1; got None"),
    (lambda: schedules.linear_decay(0.1, 5, end_lr=0.5), ValueError, r"^end_lr: expected at most lr=0.1"),
    (lambda: schedules.warmup(0.1, -1), ValueError, r"^steps: expected an integer >= 0; got -1"),
    (lambda: schedules.warmup("fast", 3), TypeError,
     r"^schedule: expected a finite number >= 0.0; got 'fast' \(str\); or a schedule from fusedmlp.schedules"),
    (lambda: schedules.constant(0.1).rates(-1, 3), ValueError, r"^first_step: expected an integer >= 0; got -1"),
    (lambda: schedules.constant(0.1).rates(0, 2.0), TypeError, r"^count: expected an integer >= 0; got 2.0"),
]


@pytest.mark.parametrize("make,error,message", BAD, ids=[m for _, _, m in BAD])
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


# --- fit with a schedule ----------------------------------------------------------------------

def data(n=120, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, (X @ rng.standard_normal((d, k))).argmax(axis=1)


SCHEDULES = [
    schedules.step_decay(0.2, step_size=5, gamma=0.5),
    schedules.exponential_decay(0.2, 0.95),
    schedules.cosine_decay(0.2, 30, min_lr=0.01),
    schedules.linear_decay(0.2, 25),
    schedules.warmup(schedules.cosine_decay(0.3, 20), 6),
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_fit_uses_the_schedules_rates_on_both_backends(schedule):
    X, y = data()
    nets = {b: fm.MLP([6, 16, 3], activation="tanh", backend=b, dtype="float64", seed=4) for b in AVAILABLE_BACKENDS}
    hist = {b: net.fit(X, y, epochs=4, batch_size=16, lr=schedule, momentum=0.9) for b, net in nets.items()}
    for h in hist.values():
        assert h.steps == 32
        np.testing.assert_array_equal(h.lr, schedule.rates(0, 32))
    np.testing.assert_allclose(hist["cpu"].step_loss, hist["numpy"].step_loss, rtol=1e-9)
    for a, b in zip(nets["cpu"].weights + nets["cpu"].biases, nets["numpy"].weights + nets["numpy"].biases):
        assert relative_error(a, b) < 1e-8


def test_warmup_steps_compose_in_front_of_a_schedule(backend):
    X, y = data()
    net = fm.MLP([6, 8, 3], backend=backend, seed=0)
    decay = schedules.exponential_decay(0.1, 0.9)
    hist = net.fit(X, y, epochs=2, batch_size=30, lr=decay, warmup_steps=3)
    np.testing.assert_allclose(hist.lr, [0.1 / 3, 0.2 / 3, 0.1, 0.1, 0.09, 0.081, 0.0729, 0.06561], rtol=1e-14)


def test_a_schedule_is_a_different_run_from_its_constant_lr(backend):
    X, y = data()
    a = fm.MLP([6, 8, 3], backend=backend, dtype="float64", seed=0)
    b = fm.MLP([6, 8, 3], backend=backend, dtype="float64", seed=0)
    a.fit(X, y, epochs=3, batch_size=30, lr=0.1)
    b.fit(X, y, epochs=3, batch_size=30, lr=schedules.step_decay(0.1, 4, 0.1))
    c = fm.MLP([6, 8, 3], backend=backend, dtype="float64", seed=0)
    c.fit(X, y, epochs=3, batch_size=30, lr=schedules.constant(0.1))
    assert not np.array_equal(a.weights[0], b.weights[0])
    np.testing.assert_array_equal(a.weights[0], c.weights[0])


def test_a_schedule_that_overflows_is_refused_before_training(backend):
    X, y = data()
    net = fm.MLP([6, 8, 3], backend=backend, seed=0)
    before = net.weights
    with pytest.raises(ValueError, match=r"^lr: exponential_decay\(lr=1.0, gamma=1e\+100\) gives learning rate "
                                         r"inf at step 4; expected finite rates >= 0"):
        net.fit(X, y, epochs=2, batch_size=20, lr=schedules.exponential_decay(1.0, 1e100))
    for a, b in zip(before, net.weights):
        np.testing.assert_array_equal(a, b)


def test_a_user_schedule_with_wrong_output_is_refused(backend):
    class Broken:
        def rates(self, first_step, count):
            return np.ones(count + 1)

    X, y = data()
    with pytest.raises(ValueError, match=r"should return 4 real numbers; got an array of dtype float64 and shape \(5,\)"):
        fm.MLP([6, 8, 3], backend=backend, seed=0).fit(X, y, epochs=1, batch_size=30, lr=Broken())
