import torch
import math

# Checking a hand-derived backward pass against torch, as the micrograd lesson does: a single
# tanh neuron built from scalar tensors in double precision with the legacy constructor.
x1 = torch.Tensor([2.0]).double()
x1.requires_grad = True
x2 = torch.Tensor([0.0]).double()
x2.requires_grad = True
w1 = torch.Tensor([-3.0]).double()
w1.requires_grad = True
w2 = torch.Tensor([1.0]).double()
w2.requires_grad = True
b = torch.Tensor([6.8813735870195432]).double()
b.requires_grad = True
n = x1 * w1 + x2 * w2 + b
o = torch.tanh(n)

print(o.data.item())
o.backward()

print("---")
print("x2", x2.grad.item())
print("w2", w2.grad.item())
print("x1", x1.grad.item())
print("w1", w1.grad.item())

# The same derivatives by hand: do/dn = 1 - tanh(n)^2.
dn = 1 - math.tanh(n.item()) ** 2
print(f"{dn:.6f}", f"{dn * w1.item():.6f}", f"{dn * x1.item():.6f}")
print(o.dtype, o.shape, x1.dtype, torch.Tensor([1, 2]).dtype, o.grad_fn.name())

# A tiny expression graph with reuse: gradients accumulate over both paths.
a = torch.tensor(-4.0, dtype=torch.float64, requires_grad=True)
bb = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
c = a + bb
d = a * bb + bb ** 3
c = c + c + 1
c = c + 1 + c + (-a)
d = d + d * 2 + (bb + a).relu()
d = d + 3 * d + (bb - a).relu()
e = c - d
f = e ** 2
g = f / 2.0
g = g + 10.0 / f
print(f"{g.data.item():.4f}")
g.backward()
print(f"{a.grad.item():.4f}", f"{bb.grad.item():.4f}")

# .data: a view with no history, used for updates outside autograd.
p = torch.Tensor([1.0, 2.0, 3.0])
p.requires_grad = True
(p ** 2).sum().backward()
p.data += -0.1 * p.grad.data
print(p, p.data.requires_grad, p.grad)
