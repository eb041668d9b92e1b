import os
import tempfile

import torch
from torch import nn

torch.manual_seed(3)
X = torch.randn(64, 4)
Y = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(64, 1)


def make():
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    return model, opt


def train(model, opt, steps):
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(X), Y)
        loss.backward()
        opt.step()
    return loss.item()


model, opt = make()
print(f"before saving: {train(model, opt, 30):.5f}")
path = os.path.join(tempfile.mkdtemp(), "ckpt.pt")
torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 30}, path)

ckpt = torch.load(path)
print(sorted(ckpt), ckpt["epoch"], list(ckpt["model"].keys()))
print(ckpt["optim"]["param_groups"][0]["lr"], len(ckpt["optim"]["state"]))
restored, ropt = make()
restored.load_state_dict(ckpt["model"])
ropt.load_state_dict(ckpt["optim"])
print(torch.equal(restored[0].weight, model[0].weight))
print(f"continued:     {train(restored, ropt, 20):.5f}")
print(f"original:      {train(model, opt, 20):.5f}")
os.remove(path)
