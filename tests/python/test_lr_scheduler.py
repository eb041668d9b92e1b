"""tensord.optim.lr_scheduler against torch.optim.lr_scheduler (torch 1.13): the lr sequences
(get_last_lr() and each group's 'lr' after every step) are torch's, float for float, in the
recursive forms step() uses and the closed forms step(epoch) uses; last_epoch, state_dict and
the errors are torch's. A training step between scheduler steps keeps the sequences honest: the
optimizer's step sends each group's current lr."""
import math
import warnings

import pytest
import torch

pytestmark = pytest.mark.timeout(120)


def _opt(m, groups=2):
    ps = [m.tensor([1.0, -2.0], requires_grad=True) for _ in range(groups)]
    return m.optim.SGD([{"params": [p], "lr": 0.1 * (i + 1)} for i, p in enumerate(ps)],
                       lr=0.1, momentum=0.9), ps


def _run(m, make, epochs=40, metrics=None, with_epoch=False):
    opt, ps = _opt(m)
    sched = make(m.optim.lr_scheduler, opt)
    seq = [list(sched.get_last_lr()) if hasattr(sched, "get_last_lr") and
           hasattr(sched, "_last_lr") else None]
    for e in range(epochs):
        opt.zero_grad()
        sum(((p * p).sum() for p in ps), m.tensor(0.0)).backward()
        opt.step()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if metrics is not None:
                sched.step(metrics[e])
            elif with_epoch:
                sched.step(e + 1)
            else:
                sched.step()
        seq.append((list(sched._last_lr), [g["lr"] for g in opt.param_groups],
                    sched.last_epoch))
    return seq, [p.tolist() for p in ps], sched


SCHEDULERS = [
    ("StepLR", lambda s, o: s.StepLR(o, step_size=3, gamma=0.5)),
    ("StepLR-default", lambda s, o: s.StepLR(o, 7)),
    ("MultiStepLR", lambda s, o: s.MultiStepLR(o, milestones=[2, 5, 5, 11], gamma=0.3)),
    ("ExponentialLR", lambda s, o: s.ExponentialLR(o, gamma=0.9)),
    ("CosineAnnealingLR", lambda s, o: s.CosineAnnealingLR(o, T_max=10)),
    ("CosineAnnealingLR-eta", lambda s, o: s.CosineAnnealingLR(o, T_max=7, eta_min=0.01)),
    ("LambdaLR", lambda s, o: s.LambdaLR(o, lr_lambda=lambda e: 0.95 ** e)),
    ("LambdaLR-list", lambda s, o: s.LambdaLR(o, [lambda e: e // 3, lambda e: 1 / (e + 1)])),
]


@pytest.mark.parametrize("name,make", SCHEDULERS, ids=[s[0] for s in SCHEDULERS])
@pytest.mark.parametrize("with_epoch", [False, True], ids=["recursive", "closed-form"])
def test_lr_sequence_is_torchs(td, name, make, with_epoch):
    want, wp, _ = _run(torch, make, with_epoch=with_epoch)
    got, gp, _ = _run(td, make, with_epoch=with_epoch)
    assert got == want  # exactly: the same float operations in the same order
    for a, b in zip(wp, gp):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-6)  # the steps used those lrs


@pytest.mark.parametrize("kw,metrics", [
    (dict(), [1.0] * 30),
    (dict(patience=2), [5, 4, 4, 4, 4, 3, 3.5, 3.2, 3.1, 3.0, 3.0, 3.0, 3.0, 2.0] * 2),
    (dict(mode="max", patience=1, factor=0.5), [1, 2, 2, 2, 3, 3, 3, 3, 1, 1] * 3),
    (dict(threshold_mode="abs", threshold=0.5, patience=0), [10, 9.8, 9.0, 8.9, 8.0] * 6),
    (dict(mode="max", threshold_mode="abs", threshold=0.1, patience=1, cooldown=2),
     [0.1 * i % 1.3 for i in range(30)]),
    (dict(patience=0, cooldown=1, min_lr=[0.02, 0.05], factor=0.5), [1.0] * 30),
    (dict(patience=0, min_lr=0.0999, eps=1e-3), [1.0] * 30),
])
def test_reduce_lr_on_plateau_is_torchs(td, kw, metrics):
    def make(s, o):
        return s.ReduceLROnPlateau(o, **kw)
    want, _, ws = _run(torch, make, epochs=len(metrics), metrics=metrics)
    got, _, gs = _run(td, make, epochs=len(metrics), metrics=metrics)
    assert got == want
    assert (gs.best, gs.num_bad_epochs, gs.cooldown_counter, gs.last_epoch) == \
        (ws.best, ws.num_bad_epochs, ws.cooldown_counter, ws.last_epoch)


def test_reduce_lr_on_plateau_takes_a_tensor_metric(td):
    res = []
    for m in (torch, td):
        opt, _ = _opt(m)
        s = m.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0)
        for v in (1.0, 1.0, 0.5, 0.5):
            s.step(m.tensor(v))
        res.append([g["lr"] for g in opt.param_groups])
    assert res[0] == res[1]


def _sd(m, sched):
    d = dict(sched.state_dict())
    d.pop("lr_lambdas", None)
    return d


@pytest.mark.parametrize("name,make", SCHEDULERS[:6] + [
    ("Plateau", lambda s, o: s.ReduceLROnPlateau(o, patience=1))], ids=lambda x: str(x)[:20])
def test_state_dict_is_torchs(td, name, make):
    dicts = []
    for m in (torch, td):
        opt, _ = _opt(m)
        sched = make(m.optim.lr_scheduler, opt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(4):
                opt.step()
                sched.step(1.0) if name == "Plateau" else sched.step()
        dicts.append(_sd(m, sched))
    assert dicts[0].keys() == dicts[1].keys()
    for k in dicts[0]:
        if k not in ("_get_lr_called_within_step",):
            assert dicts[0][k] == dicts[1][k], k
    # load_state_dict restores it into a fresh scheduler
    opt, _ = _opt(td)
    fresh = make(td.optim.lr_scheduler, opt)
    fresh.load_state_dict(dicts[1])
    assert _sd(td, fresh) == dicts[1]


def test_errors_and_warnings_are_torchs(td):
    for m in (torch, td):
        with pytest.raises(TypeError, match="int is not an Optimizer"):
            m.optim.lr_scheduler.StepLR(3, 1)
        opt, _ = _opt(m)
        with pytest.raises(KeyError, match="initial_lr"):
            m.optim.lr_scheduler.StepLR(opt, 1, last_epoch=3)
        with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
            m.optim.lr_scheduler.LambdaLR(opt, [lambda e: 1])
        with pytest.raises(ValueError, match="Factor should be < 1.0."):
            m.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=1.0)
        with pytest.raises(ValueError, match="mode foo is unknown!"):
            m.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="foo")
        with pytest.raises(ValueError, match="expected 2 min_lrs, got 1"):
            m.optim.lr_scheduler.ReduceLROnPlateau(opt, min_lr=[0.1])
        s = m.optim.lr_scheduler.ExponentialLR(opt, 0.5)
        with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
            s.step()
        with pytest.warns(UserWarning, match="get_last_lr"):
            s.get_lr()
        assert s.last_epoch == 1
        assert math.isclose(s.get_last_lr()[0], 0.05)
