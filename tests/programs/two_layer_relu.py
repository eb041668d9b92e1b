import torch

# A two-layer ReLU network trained with hand-written backpropagation, as in "Learning PyTorch
# with Examples", then the same step checked against autograd. Inputs, targets and starting
# weights come from fixed formulas instead of randn, so every run is the same.
dtype = torch.float
N, D_in, H, D_out = 16, 10, 12, 3

def fixed(rows, cols, phase):
    k = torch.arange(rows * cols, dtype=dtype).view(rows, cols)
    return torch.sin(0.7 * k + phase)

x = fixed(N, D_in, 0.0)
y = fixed(N, D_out, 1.0)
w1 = 0.3 * fixed(D_in, H, 2.0)
w2 = 0.3 * fixed(H, D_out, 3.0)
w1_start, w2_start = w1.clone(), w2.clone()

learning_rate = 1e-2
for t in range(200):
    h = x.mm(w1)
    h_relu = h.clamp(min=0)
    y_pred = h_relu.mm(w2)
    loss = (y_pred - y).pow(2).sum()
    if t % 40 == 0:
        print(t, f"{loss.item():.4f}", int((h < 0).sum()), "units off")
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.t().mm(grad_y_pred)
    grad_h_relu = grad_y_pred.mm(w2.t())
    grad_h = grad_h_relu.clone()
    grad_h[h < 0] = 0
    grad_w1 = x.t().mm(grad_h)
    w1 -= learning_rate * grad_w1
    w2 -= learning_rate * grad_w2
print("final", f"{(x.mm(w1).clamp(min=0).mm(w2) - y).pow(2).sum().item():.4f}")

# One step again from the start, by hand and by autograd: the gradients agree.
h = x.mm(w1_start)
mask = h > 0
grad_y_pred = 2.0 * (torch.relu(h).mm(w2_start) - y)
grad_h = grad_y_pred.mm(w2_start.t())
grad_h[~mask] = 0
manual = x.t().mm(grad_h)

a1 = w1_start.clone().requires_grad_(True)
a2 = w2_start.clone().requires_grad_(True)
loss = (x.mm(a1).relu().mm(a2) - y).pow(2).sum()
loss.backward()
print(a1.grad.shape, torch.allclose(a1.grad, manual, atol=1e-5))
print(torch.allclose(a2.grad, torch.relu(h).t().mm(grad_y_pred), atol=1e-5))
print(mask.dtype, mask.sum(dim=1), h[mask].shape)
print(torch.where(mask, h, torch.zeros_like(h)).equal(h.clamp(min=0)))
