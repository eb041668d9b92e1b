import torch

# A multilayer perceptron from scratch with dropout written by hand, on a fixed toy problem:
# is a point inside the ring 1.5 < r < 3? Weights start from fixed formulas.
def dropout_layer(X, dropout):
    if dropout == 1:
        return torch.zeros_like(X)
    if dropout == 0:
        return X
    mask = (torch.rand(X.shape) > dropout).float()
    return mask * X / (1.0 - dropout)

torch.manual_seed(0)
X = torch.arange(16, dtype=torch.float32).reshape((2, 8))
print(dropout_layer(X, 0.), dropout_layer(X, 1.), sep="\n")
kept = dropout_layer(torch.ones(1000), 0.5)
print(kept.shape, bool(((kept == 0) | (kept == 2)).all()))

n = 240
t = torch.arange(n, dtype=torch.float32)
pts = 3 * torch.stack([torch.sin(t * 0.731), torch.cos(t * 1.377)], dim=1)
r = pts.norm(dim=1)
y = ((r > 1.5) & (r < 3)).long()
print(pts.shape, y.dtype, y.sum().item(), "inside of", n)

def relu(X):
    a = torch.zeros_like(X)
    return torch.max(X, a)

def fixed(*shape, phase):
    k = torch.arange(torch.Size(shape).numel(), dtype=torch.float32).reshape(shape)
    return 0.5 * torch.sin(1.3 * k + phase)

W1, b1 = fixed(2, 16, phase=0.1), torch.zeros(16)
W2, b2 = fixed(16, 2, phase=0.7), torch.zeros(2)
params = [W1, b1, W2, b2]
for p in params:
    p.requires_grad_()

def net(X, training):
    H = relu(X @ W1 + b1)
    if training:
        H = dropout_layer(H, 0.0)
    return H @ W2 + b2

def loss_fn(logits, y):
    log_probs = logits - logits.logsumexp(dim=1, keepdim=True)
    return -log_probs.gather(1, y.unsqueeze(1)).squeeze(1).mean()

for epoch in range(150):
    l = loss_fn(net(pts, True), y)
    for p in params:
        p.grad = None
    l.backward()
    with torch.no_grad():
        for p in params:
            p.sub_(0.2 * p.grad)
    if epoch % 50 == 49:
        acc = (net(pts, False).argmax(1) == y).float().mean()
        print(f"epoch {epoch + 1}: loss {l.item():.4f}, train acc {acc.item():.4f}")
print(torch.relu(torch.tensor([-1.0, 2.0])).equal(relu(torch.tensor([-1.0, 2.0]))))
