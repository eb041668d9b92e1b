"""Trains a small MLP with SGD on synthetic data, on a tensord server; prints the loss falling.

Run with the daemon up (make run):  PYTHONPATH=client/python python3 client/python/examples/train_mlp.py
This is the training loop the README shows; tests/python/test_readme.py checks they agree.
"""
import numpy as np
import tensord as torch
import tensord.nn.functional as F

rng = np.random.default_rng(0)
centers = rng.standard_normal((4, 16)) * 2
labels = rng.integers(0, 4, 256)
x = torch.tensor((centers[labels] + rng.standard_normal((256, 16))).astype(np.float32))
y = torch.tensor(labels)

w1 = torch.randn(32, 16) * 0.2
w1.requires_grad_()
b1 = torch.zeros(32, requires_grad=True)
w2 = torch.randn(4, 32) * 0.2
w2.requires_grad_()
b2 = torch.zeros(4, requires_grad=True)
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
