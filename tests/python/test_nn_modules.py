"""tensord.nn modules against torch.nn: the same code builds a torch module and a tensord one,
the tensord one takes the torch one's state_dict, and forward values, parameter and input
gradients, buffers, names, keys, repr and error texts must agree. Also: a training step waits
for the server only where a value is read (one round trip)."""
from collections import OrderedDict

import numpy as np
import pytest
import torch


def of(td, t):
    """A tensord copy of torch tensor t (no grad)."""
    return td.from_numpy(t.detach().numpy().copy())


def close(d, t, atol=1e-5, rtol=1e-4):
    assert d is not None and t is not None, (d, t)
    a = np.asarray(d.tolist(), dtype=np.float64)
    b = t.detach().double().numpy()
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, atol=atol, rtol=rtol)


def check(td, make, inputs, train=True, atol=1e-5, steps=1):
    """Builds make(torch.nn) and make(td.nn), copies torch's state into tensord's, runs both on
    inputs [(torch tensor, requires_grad)], and compares outputs, gradients and buffers."""
    torch.manual_seed(0)
    tm = make(torch.nn)
    dm = make(td.nn)
    dm.load_state_dict(tm.state_dict())
    tm.train(train)
    dm.train(train)
    for _ in range(steps):
        t_in = [x.detach().clone().requires_grad_(rg) for x, rg in inputs]
        d_in = [of(td, x).requires_grad_() if rg else of(td, x) for x, rg in inputs]
        t_out = tm(*t_in)
        d_out = dm(*d_in)
        close(d_out, t_out, atol)
        g = torch.randn(t_out.shape, dtype=t_out.dtype)
        (t_out * g).sum().backward()
        (d_out * of(td, g)).sum().backward()
        for name, p in tm.named_parameters():
            close(dm.get_parameter(name).grad, p.grad, atol)
        for (tx, rg), dx in zip(zip(t_in, [rg for _, rg in inputs]), d_in):
            if rg:
                close(dx.grad, tx.grad, atol)
        for name, b in tm.named_buffers():
            close(dm.get_buffer(name), b, atol)
        tm.zero_grad(set_to_none=True)
        dm.zero_grad()
    return tm, dm


def build_net(nn):
    """A module with parameters, buffers (persistent and not), shared and nested submodules."""
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.register_buffer("count", torch_or(nn).zeros(2))
            self.register_buffer("scratch", torch_or(nn).ones(1), persistent=False)

        def forward(self, x):
            return self.fc(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch_or(nn).ones(3))
            self.a = Block()
            self.b = self.a  # shared: named once
            self.seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
            self.heads = nn.ModuleList([nn.Linear(2, 2), nn.Identity()])
            self.register_parameter("unused", None)
            self.d = nn.ModuleDict({"x": nn.Tanh(), "y": nn.Sigmoid()})

        def forward(self, x):
            return self.heads[0](self.seq(self.a(x) * self.scale))

    return Net()


def torch_or(nn):
    """The tensor package that goes with nn (torch for torch.nn, tensord for tensord.nn)."""
    import sys
    return sys.modules[nn.__name__.rsplit(".", 1)[0]]


def test_names_keys_and_traversal_match_torch(td):
    tn = build_net(torch.nn)
    dn = build_net(td.nn)
    for what in ("named_parameters", "named_buffers", "named_children", "named_modules"):
        assert [n for n, _ in getattr(dn, what)()] == [n for n, _ in getattr(tn, what)()], what
    assert ([n for n, _ in dn.named_parameters(prefix="net", recurse=False)] ==
            [n for n, _ in tn.named_parameters(prefix="net", recurse=False)])
    assert ([n for n, _ in dn.named_buffers(recurse=False)] ==
            [n for n, _ in tn.named_buffers(recurse=False)])
    assert ([n for n, _ in dn.named_modules(prefix="m", remove_duplicate=False)] ==
            [n for n, _ in tn.named_modules(prefix="m", remove_duplicate=False)])
    assert len(list(dn.parameters())) == len(list(tn.parameters()))
    assert len(list(dn.buffers())) == len(list(tn.buffers()))
    assert len(list(dn.children())) == len(list(tn.children()))
    assert len(list(dn.modules())) == len(list(tn.modules()))
    sd, tsd = dn.state_dict(), tn.state_dict()
    assert isinstance(sd, OrderedDict)
    assert list(sd.keys()) == list(tsd.keys())
    assert dict(sd._metadata) == dict(tsd._metadata)
    assert list(dn.state_dict(prefix="p.").keys()) == list(tn.state_dict(prefix="p.").keys())
    kv = dn.state_dict(keep_vars=True)
    assert kv["scale"] is dn.scale and isinstance(kv["scale"], td.nn.Parameter)
    assert not isinstance(sd["scale"], td.nn.Parameter)
    assert dn.get_submodule("seq.2") is dn.seq[2]
    assert dn.get_parameter("seq.0.bias") is dn.seq[0].bias
    assert dn.get_buffer("a.count") is dn.a.count
    names = dir(dn)
    assert names == sorted(names)
    for k in ("scale", "a", "b", "seq", "heads", "d", "unused", "forward", "training",
              "state_dict"):
        assert k in names and k in dir(tn)
    assert "count" in dir(dn.a) and "count" in dir(tn.a)
    assert [k for k in dir(dn.seq) if k.isdigit()] == [k for k in dir(tn.seq) if k.isdigit()]


def test_forward_backward_of_a_custom_module(td):
    check(td, build_net, [(torch.randn(5, 3), True)])


def test_load_state_dict_errors_and_result_match_torch(td):
    tn = build_net(torch.nn)
    dn = build_net(td.nn)
    sd = OrderedDict((k, v) for k, v in tn.state_dict().items() if k != "seq.0.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["a.junk"] = torch.zeros(1)
    with pytest.raises(RuntimeError) as te:
        tn.load_state_dict(sd)
    dsd = OrderedDict((k, of(td, v)) for k, v in sd.items())
    with pytest.raises(RuntimeError) as de:
        dn.load_state_dict(dsd)
    assert str(de.value) == str(te.value)
    assert str(de.value).startswith("Error(s) in loading state_dict for Net:\n\t"
                                    "Missing key(s) in state_dict: \"seq.0.bias\". ")
    tr = tn.load_state_dict(sd, strict=False)
    dr = dn.load_state_dict(dsd, strict=False)
    # torch reports the keys with strict=False too, without raising
    assert dr.missing_keys == tr.missing_keys == ["seq.0.bias"]
    assert dr.unexpected_keys == tr.unexpected_keys == ["extra.weight", "a.junk"]
    assert repr(dr) == repr(tr)
    full = tn.state_dict()
    assert repr(dn.load_state_dict(full)) == repr(tn.load_state_dict(full)) == \
        "<All keys matched successfully>"
    bad = OrderedDict(full)
    bad["seq.0.weight"] = torch.zeros(2, 2)
    with pytest.raises(RuntimeError) as te:
        tn.load_state_dict(bad)
    with pytest.raises(RuntimeError) as de:
        dn.load_state_dict(OrderedDict((k, of(td, v)) for k, v in bad.items()))
    assert str(de.value) == str(te.value).replace("torch.Size", "tensord.Size")
    with pytest.raises(TypeError) as e:
        dn.load_state_dict([1])
    assert str(e.value) == "Expected state_dict to be dict-like, got <class 'list'>."
    # the values arrive
    dn.load_state_dict(OrderedDict((k, of(td, v)) for k, v in full.items()))
    for k, v in full.items():
        close(dn.state_dict()[k], v)


def test_registration_errors_match_torch(td):
    tm, dm = torch.nn.Linear(2, 2), td.nn.Linear(2, 2)
    cases = [
        lambda nn, m, T: setattr(m, "weight", T.zeros(2, 2)),
        lambda nn, m, T: m.register_buffer("a.b", None),
        lambda nn, m, T: m.register_buffer("", None),
        lambda nn, m, T: m.register_buffer("weight", None),
        lambda nn, m, T: m.register_parameter("x.y", None),
        lambda nn, m, T: m.register_parameter("in_features", None),
        lambda nn, m, T: m.add_module("w", 3),
        lambda nn, m, T: m.add_module("a.b", nn.ReLU()),
        lambda nn, m, T: m.register_buffer("buf", 3),
        lambda nn, m, T: getattr(m, "nothing"),
        lambda nn, m, T: m.train("yes"),
    ]
    for case in cases:
        with pytest.raises(Exception) as te:
            case(torch.nn, tm, torch)
        with pytest.raises(Exception) as de:
            case(td.nn, dm, td)
        assert type(de.value) is type(te.value)
        # a tensor's type name is the package's ('tensord.FloatTensor'), as it prints
        assert str(de.value).replace("tensord.", "torch.") == str(te.value)

    class Early(td.nn.Module):
        def __init__(self):
            self.w = td.nn.Parameter(td.zeros(1))

    class EarlyT(torch.nn.Module):
        def __init__(self):
            self.w = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(AttributeError) as te:
        EarlyT()
    with pytest.raises(AttributeError) as de:
        Early()
    assert str(de.value) == str(te.value)


def test_attribute_reassignment_and_deletion(td):
    for nn, T in ((torch.nn, torch), (td.nn, td)):
        m = nn.Linear(2, 2)
        m.bias = None
        assert m.bias is None and "bias" in m._parameters
        m.extra = nn.Parameter(T.zeros(1))
        m.sub = nn.ReLU()
        m.register_buffer("b", T.zeros(1))
        m.b = None
        assert [n for n, _ in m.named_parameters()] == ["weight", "extra"]
        assert list(m.state_dict().keys()) == ["weight", "extra"]
        del m.extra
        del m.sub
        assert [n for n, _ in m.named_parameters()] == ["weight"]
        assert list(m._modules) == []
        assert repr(m) == "Linear(in_features=2, out_features=2, bias=False)"


def test_repr_of_a_module_tree_matches_torch(td):
    def make(nn):
        return nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(1, 4, 3, padding=1)),
            ("conv2", nn.Conv2d(4, 4, (3, 5), stride=(2, 1), padding=(4, 2), dilation=(3, 1),
                                groups=2, bias=False, padding_mode="reflect")),
            ("c1", nn.Conv1d(2, 3, 3, stride=2)),
            ("bn", nn.BatchNorm2d(4)),
            ("bn1", nn.BatchNorm1d(3, eps=1e-3, momentum=None, affine=False,
                                   track_running_stats=False)),
            ("pool", nn.MaxPool2d(2)),
            ("pool2", nn.MaxPool2d((3, 2), stride=1, padding=1, dilation=2, ceil_mode=True)),
            ("avg", nn.AvgPool2d(2, stride=1)),
            ("mp1", nn.MaxPool1d(3, stride=2, padding=1)),
            ("ap1", nn.AvgPool1d(2)),
            ("ada", nn.AdaptiveAvgPool2d((1, 1))),
            ("drop", nn.Dropout(0.25)),
            ("flat", nn.Flatten()),
            ("unflat", nn.Unflatten(1, (2, 2))),
            ("emb", nn.Embedding(10, 3, padding_idx=0)),
            ("emb2", nn.Embedding(10, 3, max_norm=1.0, norm_type=1.0,
                                  scale_grad_by_freq=True)),
            ("ln", nn.LayerNorm([4, 4])),
            ("ln2", nn.LayerNorm(3, eps=1e-6, elementwise_affine=False)),
            ("lin", nn.Linear(4, 2)),
            ("nobias", nn.Linear(4, 2, bias=False)),
            ("bil", nn.Bilinear(2, 3, 4)),
            ("inner", nn.Sequential(nn.ReLU(), nn.ReLU(inplace=True), nn.LeakyReLU(),
                                    nn.LeakyReLU(0.2, inplace=True), nn.GELU(),
                                    nn.GELU(approximate="tanh"), nn.SiLU(), nn.Sigmoid(),
                                    nn.Tanh(), nn.Softmax(dim=1), nn.LogSoftmax(dim=-1),
                                    nn.Softmax(), nn.Softplus(), nn.Softplus(2, 10), nn.ELU(),
                                    nn.ELU(0.5, True), nn.Hardtanh(), nn.ReLU6(),
                                    nn.Identity())),
            ("list", nn.ModuleList([nn.Linear(1, 1), nn.ModuleDict({"a": nn.ReLU()})])),
            ("losses", nn.ModuleList([nn.MSELoss(), nn.L1Loss(reduction="sum"),
                                      nn.SmoothL1Loss(beta=0.5), nn.HuberLoss(delta=2.0),
                                      nn.CrossEntropyLoss(label_smoothing=0.1), nn.NLLLoss(),
                                      nn.BCELoss(), nn.BCEWithLogitsLoss()])),
        ]))
    assert repr(make(td.nn)) == repr(make(torch.nn))
    assert str(make(td.nn)) == str(make(torch.nn))


def test_loss_constructor_arguments_match_torch(td):
    import warnings
    for name, kw in [("MSELoss", {}), ("L1Loss", {"reduction": "none"}),
                     ("MSELoss", {"size_average": False}), ("L1Loss", {"reduce": False}),
                     ("SmoothL1Loss", {"beta": 0.3}), ("HuberLoss", {"delta": 0.4}),
                     ("CrossEntropyLoss", {"ignore_index": 3, "label_smoothing": 0.2}),
                     ("NLLLoss", {"ignore_index": 1, "reduction": "sum"}),
                     ("BCELoss", {}), ("BCEWithLogitsLoss", {})]:
        with warnings.catch_warnings(record=True) as tw:
            warnings.simplefilter("always")
            t = getattr(torch.nn, name)(**kw)
        with warnings.catch_warnings(record=True) as dw:
            warnings.simplefilter("always")
            d = getattr(td.nn, name)(**kw)
        assert [str(w.message) for w in dw] == [str(w.message) for w in tw]
        for attr in ("reduction", "ignore_index", "label_smoothing", "beta", "delta"):
            assert getattr(d, attr, None) == getattr(t, attr, None), (name, attr)
        assert [n for n, _ in d.named_buffers()] == [n for n, _ in t.named_buffers()]
        assert list(d._buffers) == list(t._buffers)


def test_parameter(td):
    p = td.nn.Parameter(td.tensor([1.0, 2.0]))
    tp = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    assert repr(p) == repr(tp) == "Parameter containing:\ntensor([1., 2.], requires_grad=True)"
    assert isinstance(p, td.Tensor) and p.requires_grad and p.is_leaf and p.grad_fn is None
    q = td.nn.Parameter(td.tensor([1.0]), requires_grad=False)
    assert not q.requires_grad
    assert repr(q) == repr(torch.nn.Parameter(torch.tensor([1.0]), requires_grad=False))
    # shares the data's storage, as torch's
    data = td.zeros(2)
    p = td.nn.Parameter(data)
    with td.no_grad():
        p.add_(1)
    assert data.tolist() == [1.0, 1.0]
    empty = td.nn.Parameter()
    assert tuple(empty.shape) == tuple(torch.nn.Parameter().shape)


def test_train_eval_requires_grad_apply(td):
    tn, dn = build_net(torch.nn), build_net(td.nn)
    for n in (tn, dn):
        assert n.training and n.a.fc.training
        assert n.eval() is n
        assert not n.training and not n.seq[1].training
        n.train()
        assert n.seq[1].training
        assert n.requires_grad_(False) is n
    assert [p.requires_grad for p in dn.parameters()] == \
        [p.requires_grad for p in tn.parameters()] == [False] * len(list(tn.parameters()))
    dn.requires_grad_()
    assert all(p.requires_grad for p in dn.parameters())
    order = {tn: [], dn: []}
    for n in (tn, dn):
        assert n.apply(lambda m, n=n: order[n].append(type(m).__name__)) is n
    assert order[dn] == order[tn]


def test_zero_grad(td):
    for mod in (torch, td):
        m = mod.nn.Linear(3, 2)
        m(mod.ones(4, 3)).sum().backward()
        assert m.weight.grad is not None
        m.zero_grad()  # torch 1.13's default: zeroed in place
        assert m.weight.grad.tolist() == [[0.0] * 3] * 2 and m.bias.grad.tolist() == [0.0] * 2
        m.zero_grad(set_to_none=True)
        assert m.weight.grad is None and m.bias.grad is None


def test_to_changes_dtype_in_place(td):
    tm = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    dm = td.nn.Sequential(td.nn.Linear(3, 2), td.nn.BatchNorm1d(2))
    dm.load_state_dict(tm.state_dict())
    w = dm[0].weight
    assert dm.to(td.float64) is dm and dm.double() is dm and dm.cpu() is dm
    tm.double()
    assert dm[0].weight is w and w.dtype == td.float64 and w.requires_grad and w.is_leaf
    assert dm[1].running_mean.dtype == td.float64
    assert dm[1].num_batches_tracked.dtype == td.int64
    x = torch.randn(4, 3, dtype=torch.float64)
    close(dm[0](of(td, x)), tm[0](x))
    assert dm.to("cpu") is dm and dm.to(device="cpu", dtype=td.float32) is dm
    assert dm[0].weight.dtype == td.float32
    with pytest.raises(TypeError) as te:
        tm.to(torch.int64)
    with pytest.raises(TypeError) as de:
        dm.to(td.int64)
    assert str(de.value) == str(te.value).replace("torch.", "tensord.")


def test_forward_hooks_and_call(td):
    m = td.nn.Linear(2, 2)
    seen = []
    h1 = m.register_forward_pre_hook(lambda mod, inp: seen.append(("pre", mod is m)))
    h2 = m.register_forward_hook(lambda mod, inp, out: out * 0)
    out = m(td.ones(1, 2))
    assert seen == [("pre", True)] and out.tolist() == [[0.0, 0.0]]
    h1.remove()
    h2.remove()
    assert m(td.ones(1, 2)).tolist() != [[0.0, 0.0]]

    class NoForward(td.nn.Module):
        pass

    class NoForwardT(torch.nn.Module):
        pass
    with pytest.raises(NotImplementedError) as te:
        NoForwardT()(1)
    with pytest.raises(NotImplementedError) as de:
        NoForward()(1)
    assert str(de.value) == str(te.value).replace("NoForwardT", "NoForward")


def test_containers_match_torch(td):
    def make(nn):
        return nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    for nn in (torch.nn, td.nn):
        s = make(nn)
        assert len(s) == 3 and isinstance(s[0], nn.Linear) and isinstance(s[-1], nn.Linear)
        sl = s[1:]
        assert type(sl) is nn.Sequential and list(sl._modules) == ["1", "2"]
        assert [type(m).__name__ for m in s] == ["Linear", "ReLU", "Linear"]
        s.append(nn.Tanh())
        assert list(s._modules) == ["0", "1", "2", "3"]
        del s[1]
        assert list(s._modules) == ["0", "1", "2"]
        s[0] = nn.Identity()
        assert isinstance(s[0], nn.Identity)
        with pytest.raises(IndexError, match="index 5 is out of range"):
            s[5]
        s2 = nn.Sequential(OrderedDict([("a", nn.ReLU()), ("b", nn.Tanh())]))
        assert list(s2._modules) == ["a", "b"] and s2.b is s2[1]
        s3 = s + s2
        assert list(s3._modules) == ["0", "1", "2", "3", "4"]
        s.insert(1, nn.Sigmoid())
        assert [type(m).__name__ for m in s] == ["Identity", "Sigmoid", "Linear", "Tanh"]
        ml = nn.ModuleList([nn.ReLU(), nn.Tanh()])
        ml.append(nn.Sigmoid())
        ml.extend([nn.Identity()])
        ml.insert(0, nn.ELU())
        assert [type(m).__name__ for m in ml] == ["ELU", "ReLU", "Tanh", "Sigmoid", "Identity"]
        assert len(ml[1:3]) == 2 and type(ml[1:3]) is nn.ModuleList
        assert type(ml[-1]).__name__ == "Identity"
        del ml[0]
        assert list(ml._modules) == ["0", "1", "2", "3"]
        md = nn.ModuleDict({"a": nn.ReLU()})
        md["b"] = nn.Tanh()
        md.update([("c", nn.Sigmoid())])
        assert list(md.keys()) == ["a", "b", "c"] and "b" in md and len(md) == 3
        assert list(md) == ["a", "b", "c"]
        assert type(md.pop("a")).__name__ == "ReLU" and list(md.keys()) == ["b", "c"]
    tm, dm = make(torch.nn), make(td.nn)
    assert [k for k in dir(dm) if k.isdigit()] == [k for k in dir(tm) if k.isdigit()] == []
    check(td, make, [(torch.randn(4, 2), True)])


def count_waits(td, step, steps=3):
    """Runs step() (which returns the loss) `steps` times; asserts that nothing in it waits for
    the server until the loss is read, and that reading it is the one wait."""
    s = td._session()
    step().item()  # settle the set-up (first replies, shapes of the data)
    waits = []
    real = s._wait

    def counting(p):
        waits.append(p)
        return real(p)
    s._wait = counting
    try:
        for _ in range(steps):
            loss = step()
            assert waits == []
            loss.item()
            assert len(waits) == 1
            waits.clear()
    finally:
        del s._wait


def count_training_waits(td, model, loss_fn, x, y):
    """count_waits over a training step of model: zero_grad, loss_fn(model(x), y), backward."""
    def step():
        model.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss
    count_waits(td, step)


def test_one_round_trip_per_training_step(td):
    """forward, loss, backward and zero_grad send requests without waiting for replies: the
    only wait of a step is reading the loss."""
    model = td.nn.Sequential(td.nn.Linear(8, 16), td.nn.ReLU(), td.nn.Linear(16, 4))
    loss_fn = td.nn.MSELoss()
    x, y = td.randn(32, 8), td.randn(32, 4)
    count_training_waits(td, model, loss_fn, x, y)


def test_one_round_trip_per_step_of_a_cnn(td):
    nn = td.nn
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Identity(),
                          nn.AvgPool2d(1), nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(),
                          nn.Dropout(0.2), nn.Linear(16, 8), nn.LayerNorm(8), nn.GELU(),
                          nn.Linear(8, 3))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    x, y = td.randn(5, 1, 8, 8), td.tensor([0, 2, 1, 1, 0])
    count_training_waits(td, model, loss_fn, x, y)


def test_one_round_trip_per_step_of_an_embedding_mlp(td):
    nn = td.nn
    emb = nn.Embedding(27, 4)
    body = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.BatchNorm1d(16, momentum=None),
                         nn.Tanh(), nn.Linear(16, 27), nn.LogSoftmax(dim=1))
    loss_fn = nn.NLLLoss()
    x, y = td.randint(0, 27, (8, 3)), td.randint(0, 27, (8,))

    def step():
        emb.zero_grad()
        body.zero_grad()
        loss = loss_fn(body(emb(x)), y)
        loss.backward()
        return loss
    count_waits(td, step)


# -- layers against torch: forward, backward, buffers --

def test_linear(td):
    check(td, lambda nn: nn.Linear(4, 3), [(torch.randn(5, 4), True)])
    check(td, lambda nn: nn.Linear(4, 3, bias=False), [(torch.randn(2, 5, 4), True)])


def test_bilinear(td):
    check(td, lambda nn: nn.Bilinear(3, 4, 2), [(torch.randn(5, 3), True),
                                                 (torch.randn(5, 4), True)])


def test_embedding(td):
    idx = torch.tensor([[0, 2, 4], [4, 3, 0]])
    check(td, lambda nn: nn.Embedding(5, 3), [(idx, False)])
    check(td, lambda nn: nn.Embedding(5, 3, padding_idx=4), [(idx, False)])


def test_layer_norm(td):
    check(td, lambda nn: nn.LayerNorm(4), [(torch.randn(3, 4), True)])
    check(td, lambda nn: nn.LayerNorm([2, 4], elementwise_affine=False),
          [(torch.randn(3, 2, 4), True)])


def test_batch_norm_train_and_eval(td):
    check(td, lambda nn: nn.BatchNorm1d(4), [(torch.randn(6, 4), True)], steps=3)
    check(td, lambda nn: nn.BatchNorm1d(3, momentum=None), [(torch.randn(5, 3, 2), True)],
          steps=3)
    check(td, lambda nn: nn.BatchNorm2d(3), [(torch.randn(2, 3, 4, 4), True)], steps=2)
    check(td, lambda nn: nn.BatchNorm2d(3, affine=False, track_running_stats=False),
          [(torch.randn(2, 3, 2, 2), True)])
    tm, dm = check(td, lambda nn: nn.BatchNorm1d(4), [(torch.randn(6, 4), True)], steps=2)
    x = torch.randn(3, 4)
    tm.eval()
    dm.eval()
    close(dm(of(td, x)), tm(x))
    assert dm.num_batches_tracked.item() == tm.num_batches_tracked.item() == 2


def test_batch_norm_cumulative_average_after_load(td):
    """momentum=None averages over num_batches_tracked, which a loaded state carries on."""
    def make(nn):
        return nn.BatchNorm1d(2, momentum=None)
    torch.manual_seed(0)
    tm, dm = make(torch.nn), make(td.nn)
    tm.num_batches_tracked.fill_(4)
    tm.running_mean.fill_(1.0)
    dm.load_state_dict(tm.state_dict())
    for _ in range(2):
        x = torch.randn(5, 2)
        close(dm(of(td, x)), tm(x))
    close(dm.running_mean, tm.running_mean)
    close(dm.running_var, tm.running_var)
    assert dm.num_batches_tracked.item() == 6


def test_batch_norm_input_dim_check(td):
    with pytest.raises(ValueError) as te:
        torch.nn.BatchNorm2d(3)(torch.zeros(2, 3))
    x = td.zeros(2, 3)
    x.shape  # checked where the client knows the shape: asking would cost a round trip
    with pytest.raises(ValueError) as de:
        td.nn.BatchNorm2d(3)(x)
    assert str(de.value) == str(te.value)


def test_dropout(td):
    check(td, lambda nn: nn.Dropout(0.5), [(torch.randn(4, 4), True)], train=False)
    check(td, lambda nn: nn.Dropout(0.0), [(torch.randn(4, 4), True)])
    m = td.nn.Dropout(0.5)
    y = m(td.ones(1000)).tolist()
    assert set(y) <= {0.0, 2.0} and 300 < y.count(0.0) < 700
    with pytest.raises(ValueError) as te:
        torch.nn.Dropout(1.5)
    with pytest.raises(ValueError) as de:
        td.nn.Dropout(1.5)
    assert str(de.value) == str(te.value)


def test_flatten_unflatten(td):
    check(td, lambda nn: nn.Flatten(), [(torch.randn(2, 3, 4), True)])
    check(td, lambda nn: nn.Flatten(0, 1), [(torch.randn(2, 3, 4), True)])
    check(td, lambda nn: nn.Unflatten(1, (2, 3)), [(torch.randn(4, 6), True)])
    check(td, lambda nn: nn.Unflatten(-1, (3, -1)), [(torch.randn(4, 6), True)])


def test_conv(td):
    check(td, lambda nn: nn.Conv1d(2, 3, 3), [(torch.randn(2, 2, 7), True)], atol=1e-4)
    check(td, lambda nn: nn.Conv1d(4, 2, 2, stride=2, padding=1, groups=2, bias=False),
          [(torch.randn(1, 4, 6), True)], atol=1e-4)
    check(td, lambda nn: nn.Conv2d(3, 4, 3, padding=1), [(torch.randn(2, 3, 5, 5), True)],
          atol=1e-4)
    check(td, lambda nn: nn.Conv2d(2, 2, (2, 3), stride=(2, 1), dilation=(1, 2)),
          [(torch.randn(1, 2, 6, 7), True)], atol=1e-4)


def test_pooling(td):
    x = torch.randn(2, 3, 6, 6)
    check(td, lambda nn: nn.MaxPool2d(2), [(x, True)])
    check(td, lambda nn: nn.MaxPool2d(3, stride=2, padding=1), [(x, True)])
    check(td, lambda nn: nn.AvgPool2d(2), [(x, True)])
    check(td, lambda nn: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
          [(x, True)])
    check(td, lambda nn: nn.AdaptiveAvgPool2d((1, 1)), [(x, True)])
    check(td, lambda nn: nn.AdaptiveAvgPool2d(4), [(x, True)])
    x1 = torch.randn(2, 3, 9)
    check(td, lambda nn: nn.MaxPool1d(3, stride=2, padding=1), [(x1, True)])
    check(td, lambda nn: nn.AvgPool1d(2), [(x1, True)])


@pytest.mark.parametrize("make", [
    lambda nn: nn.ReLU(), lambda nn: nn.LeakyReLU(), lambda nn: nn.LeakyReLU(0.2),
    lambda nn: nn.GELU(), lambda nn: nn.GELU(approximate="tanh"), lambda nn: nn.SiLU(),
    lambda nn: nn.Sigmoid(), lambda nn: nn.Tanh(), lambda nn: nn.Softmax(dim=1),
    lambda nn: nn.LogSoftmax(dim=-1), lambda nn: nn.Softplus(), lambda nn: nn.Softplus(2, 1),
    lambda nn: nn.ELU(), lambda nn: nn.ELU(0.5), lambda nn: nn.Hardtanh(-0.5, 0.5),
    lambda nn: nn.ReLU6(), lambda nn: nn.Identity(),
], ids=["relu", "leaky", "leaky02", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh", "softmax",
        "log_softmax", "softplus", "softplus_b2", "elu", "elu05", "hardtanh", "relu6",
        "identity"])
def test_activations(td, make):
    check(td, make, [(torch.randn(4, 5) * 3, True)])


def test_softmax_without_dim_warns_as_torch(td):
    x = torch.randn(2, 3)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        t = torch.nn.Softmax()(x)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        d = td.nn.Softmax()(of(td, x))
    close(d, t)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses(td, reduction):
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    for make in (lambda nn: nn.MSELoss(reduction=reduction),
                 lambda nn: nn.L1Loss(reduction=reduction),
                 lambda nn: nn.SmoothL1Loss(reduction=reduction, beta=0.5),
                 lambda nn: nn.HuberLoss(reduction=reduction, delta=0.7)):
        check(td, make, [(a, True), (b, False)])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_classification_losses(td, reduction):
    logits = torch.randn(5, 4)
    target = torch.tensor([0, 3, 1, 1, 2])

    check(td, lambda nn: nn.CrossEntropyLoss(reduction=reduction), [(logits, True),
                                                                     (target, False)])
    check(td, lambda nn: nn.CrossEntropyLoss(reduction=reduction, ignore_index=1,
                                             label_smoothing=0.1),
          [(logits, True), (target, False)])
    check(td, lambda nn: nn.NLLLoss(reduction=reduction),
          [(torch.log_softmax(logits, 1), True), (target, False)])
    probs = torch.rand(5, 3) * 0.9 + 0.05
    labels = (torch.rand(5, 3) > 0.5).float()
    check(td, lambda nn: nn.BCELoss(reduction=reduction), [(probs, True), (labels, False)])
    check(td, lambda nn: nn.BCEWithLogitsLoss(reduction=reduction),
          [(logits[:, :3], True), (labels, False)])


def test_weighted_losses(td):
    logits = torch.randn(5, 4)
    target = torch.tensor([0, 3, 1, 1, 2])
    w = torch.tensor([1.0, 2.0, 0.5, 1.5])
    pw = torch.tensor([2.0, 0.5, 1.0])
    labels = (torch.rand(5, 3) > 0.5).float()
    t = torch.nn.CrossEntropyLoss(weight=w)
    d = td.nn.CrossEntropyLoss(weight=of(td, w))
    assert [n for n, _ in d.named_buffers()] == [n for n, _ in t.named_buffers()] == ["weight"]
    close(d(of(td, logits), of(td, target)), t(logits, target))
    close(td.nn.NLLLoss(weight=of(td, w))(of(td, logits), of(td, target)),
          torch.nn.NLLLoss(weight=w)(logits, target))
    close(td.nn.BCEWithLogitsLoss(pos_weight=of(td, pw))(of(td, logits[:, :3]), of(td, labels)),
          torch.nn.BCEWithLogitsLoss(pos_weight=pw)(logits[:, :3], labels))


def test_deepcopy(td):
    import copy
    tn, dn = build_net(torch.nn), build_net(td.nn)
    dn.load_state_dict(tn.state_dict())
    dn.note = td.ones(2)  # a tensor attribute that is neither parameter nor buffer
    dc, tc = copy.deepcopy(dn), copy.deepcopy(tn)
    assert dc.note is not dn.note and dc.note.tolist() == [1.0, 1.0]
    assert repr(dc) == repr(dn)
    assert [n for n, _ in dc.named_parameters()] == [n for n, _ in tc.named_parameters()]
    assert dc.a is dc.b and dc.a is not dn.a
    for (n, p), (_, q) in zip(dc.named_parameters(), dn.named_parameters()):
        assert p is not q and isinstance(p, td.nn.Parameter) and p.requires_grad
        assert p.tolist() == q.tolist()
    with td.no_grad():
        dc.scale.add_(1)
    assert dn.scale.tolist() == [1.0, 1.0, 1.0]
    x = torch.randn(2, 3)
    close(dc.a(of(td, x)), tc.a(x))


def test_parameter_list(td):
    def make(nn, T):
        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.ps = nn.ParameterList([nn.Parameter(T.ones(2, 3)), T.zeros(4)])
                self.ps.append(nn.Parameter(T.ones(1)))

            def forward(self, x):
                return x * self.ps[0].sum() + self.ps[1].sum() + self.ps[-1]
        return M()
    tm, dm = make(torch.nn, torch), make(td.nn, td)
    assert repr(dm) == repr(tm).replace("torch.", "tensord.")
    assert [n for n, _ in dm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert len(dm.ps) == 3 and isinstance(dm.ps[1], td.nn.Parameter)
    assert len(dm.ps[1:]) == 2
    x = torch.randn(3)
    close(dm(of(td, x)), tm(x))
    with pytest.raises(RuntimeError, match="ParameterList should not be called."):
        dm.ps(1)
