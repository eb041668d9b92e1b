"""Issue 17's training-step contract: an MLP 784-256-10 built from nn.Sequential, trained with
optim.SGD and optim.Adam on synthetic data, costs one round trip per step (one socket write of
the step's requests, one wait for its replies: the loss's value) and its losses over 200 steps
match PyTorch's, from the same initial weights, to 1e-4 relative.

The data lives on the server (uploaded once); each batch is a slice of it, so no step uploads
anything. The model's weights come from torch's model through load_state_dict, so the two runs
start from the same point whatever the generators do."""
import numpy as np
import pytest
import torch

STEPS = 200
N, BATCH = 1024, 256


def data():
    rng = np.random.default_rng(17)
    centers = (rng.standard_normal((10, 784)) * 0.04).astype(np.float32)  # classes overlap
    y = rng.integers(0, 10, N)
    x = (centers[y] + rng.standard_normal((N, 784)).astype(np.float32)).astype(np.float32)
    return x, y.astype(np.int64)


def train(m, model, opt, x, y, counters=None):
    loss_fn = m.nn.CrossEntropyLoss()
    losses, per_step = [], []
    for step in range(STEPS):
        i = (step * BATCH) % N
        xb, yb = x[i:i + BATCH], y[i:i + BATCH]
        before = counters() if counters else None
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if counters:
            after = counters()
            per_step.append(tuple(a - b for a, b in zip(after, before)))
    return losses, per_step


def model_pair(td):
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    dm = td.nn.Sequential(td.nn.Linear(784, 256), td.nn.ReLU(), td.nn.Linear(256, 10))
    dm.load_state_dict({k: td.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return tm, dm


@pytest.mark.timeout(600)
@pytest.mark.parametrize("make_opt", [
    lambda m, p: m.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda m, p: m.optim.Adam(p, lr=1e-3),
], ids=["sgd", "adam"])
def test_mlp_training_step_is_one_round_trip_and_matches_torch(td, make_opt):
    import tensord.nn  # noqa: F401 - td.nn
    import tensord.optim  # noqa: F401 - td.optim
    x, y = data()
    tm, dm = model_pair(td)
    want, _ = train(torch, tm, make_opt(torch, tm.parameters()), torch.tensor(x), torch.tensor(y))
    dx, dy = td.tensor(x), td.tensor(y)
    dx.tolist  # noqa: B018 - the upload is queued; the first step's wait covers it
    conn = td._default._c if td._default is not None else None
    got, per_step = train(td, dm, make_opt(td, dm.parameters()), dx, dy,
                          counters=lambda: (td._default._c.writes, td._default._c.waits))
    assert conn is None or conn is td._default._c  # one connection throughout
    # after the first step (which also carries the upload and the state's creation), every
    # step is one write of its requests and one wait for their replies
    assert all(s == (1, 1) for s in per_step[1:]), sorted(set(per_step[1:]))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=0)
    assert got[-1] < got[0] * 0.5  # it trains
