import torch
import math
import numpy as np

# Fit y = sin(x) on [-pi, pi] with a cubic a + b x + c x^2 + d x^3, three times over:
# numpy with hand-written gradients, torch tensors with the same gradients, then autograd.
# The starting coefficients are fixed, so every run takes the same path.
START = (0.1, -0.2, 0.05, 0.01)
STEPS, LR = 300, 1e-6

x = np.linspace(-math.pi, math.pi, 2000)
y = np.sin(x)
a, b, c, d = START
for t in range(STEPS):
    y_pred = a + b * x + c * x ** 2 + d * x ** 3
    loss = np.square(y_pred - y).sum()
    grad_y_pred = 2.0 * (y_pred - y)
    a -= LR * grad_y_pred.sum()
    b -= LR * (grad_y_pred * x).sum()
    c -= LR * (grad_y_pred * x ** 2).sum()
    d -= LR * (grad_y_pred * x ** 3).sum()
    if t % 100 == 99:
        print("numpy", t, f"{loss:.4f}")
print(f"numpy: y = {a:.5f} + {b:.5f} x + {c:.5f} x^2 + {d:.5f} x^3")

dtype = torch.float64
xt = torch.linspace(-math.pi, math.pi, 2000, dtype=dtype)
yt = torch.sin(xt)
a, b, c, d = (torch.tensor(v, dtype=dtype) for v in START)
for t in range(STEPS):
    y_pred = a + b * xt + c * xt ** 2 + d * xt ** 3
    loss = (y_pred - yt).pow(2).sum()
    grad_y_pred = 2.0 * (y_pred - yt)
    a -= LR * grad_y_pred.sum()
    b -= LR * (grad_y_pred * xt).sum()
    c -= LR * (grad_y_pred * xt ** 2).sum()
    d -= LR * (grad_y_pred * xt ** 3).sum()
    if t % 100 == 99:
        print("tensors", t, f"{loss.item():.4f}")
print(f"tensors: y = {a.item():.5f} + {b.item():.5f} x + {c.item():.5f} x^2 + {d.item():.5f} x^3")

params = [torch.tensor(v, dtype=dtype, requires_grad=True) for v in START]
for t in range(STEPS):
    a, b, c, d = params
    y_pred = a + b * xt + c * xt ** 2 + d * xt ** 3
    loss = (y_pred - yt).pow(2).sum()
    loss.backward()
    with torch.no_grad():
        for p in params:
            p -= LR * p.grad
            p.grad = None
    if t % 100 == 99:
        print("autograd", t, f"{loss.item():.4f}")
a, b, c, d = params
print(f"autograd: y = {a.item():.5f} + {b.item():.5f} x + {c.item():.5f} x^2 + {d.item():.5f} x^3")
print(loss.dtype, loss.requires_grad, a.grad, a.is_leaf, y_pred.is_leaf)
