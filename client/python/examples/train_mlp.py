"""Trains a small MLP with SGD on synthetic data, on a tensord server; prints the loss falling.

Run with the daemon up (make run):  PYTHONPATH=client/python python3 client/python/examples/train_mlp.py
"""
import numpy as np

import tensord as torch
import tensord.nn.functional as F

rng = np.random.default_rng(0)
n, d_in, d_hidden, classes = 256, 16, 32, 4
centers = rng.standard_normal((classes, d_in)) * 2
labels = rng.integers(0, classes, n)
x = torch.tensor((centers[labels] + rng.standard_normal((n, d_in))).astype(np.float32))
y = torch.tensor(labels.astype(np.int64))

w1 = torch.tensor((rng.standard_normal((d_hidden, d_in)) * 0.2).astype(np.float32),
                  requires_grad=True)
b1 = torch.zeros(d_hidden, requires_grad=True)
w2 = torch.tensor((rng.standard_normal((classes, d_hidden)) * 0.2).astype(np.float32),
                  requires_grad=True)
b2 = torch.zeros(classes, requires_grad=True)
params = [w1, b1, w2, b2]

for step in range(101):
    loss = F.cross_entropy(F.linear(F.relu(F.linear(x, w1, b1)), w2, b2), y)
    loss.backward()
    with torch.no_grad():
        for p in params:
            p -= 0.5 * p.grad
            p.grad = None
    if step % 20 == 0:
        print(f"step {step:3d}  loss {loss.item():.4f}")
