import torch

# Softmax regression from scratch on three classes of 2-D points. The data comes from a fixed
# formula and the weights start at zero, so the run is the same everywhere.
n, num_inputs, num_outputs = 120, 2, 3
i = torch.arange(n, dtype=torch.float32)
centers = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
y = torch.arange(n) % 3
X = centers[y] + 1.5 * torch.stack([torch.sin(1.3 * i), torch.cos(2.9 * i)], dim=1)
print(X.shape, y.shape, y.dtype, y[:6])

W = torch.zeros(num_inputs, num_outputs, requires_grad=True)
b = torch.zeros(num_outputs, requires_grad=True)

def softmax(X):
    X_exp = torch.exp(X)
    partition = X_exp.sum(1, keepdim=True)
    return X_exp / partition

def net(X):
    return softmax(torch.matmul(X.reshape((-1, W.shape[0])), W) + b)

def cross_entropy(y_hat, y):
    return -torch.log(y_hat[range(len(y_hat)), y])

def accuracy(y_hat, y):
    y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.type(y.dtype) == y
    return float(cmp.type(y.dtype).sum())

# The picking trick on a tiny example first.
y_demo = torch.tensor([0, 2])
y_hat_demo = torch.tensor([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])
print(y_hat_demo[[0, 1], y_demo], cross_entropy(y_hat_demo, y_demo))
print(accuracy(y_hat_demo, y_demo) / len(y_demo))

lr, batch_size = 0.1, 30
for epoch in range(5):
    for start in range(0, n, batch_size):
        Xb, yb = X[start:start + batch_size], y[start:start + batch_size]
        l = cross_entropy(net(Xb), yb)
        l.mean().backward()
        with torch.no_grad():
            for param in (W, b):
                param -= lr * param.grad
                param.grad.zero_()
    with torch.no_grad():
        y_hat = net(X)
        loss = cross_entropy(y_hat, y).mean()
        print(f"epoch {epoch + 1}, loss {loss:.4f}, acc {accuracy(y_hat, y) / n:.3f}")

print(W.detach(), b.detach(), sep="\n")
probs = net(X[:4])
print(probs.sum(dim=1), probs.argmax(1), y[:4])
