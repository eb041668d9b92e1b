import torch

# Linear regression from scratch (d2l's first chapter): synthetic data from known weights,
# minibatches in a fixed shuffled order, parameters updated in place under torch.no_grad().
def synthetic_data(w, b, num_examples):
    i = torch.arange(num_examples, dtype=torch.float32)
    X = torch.stack([torch.sin(i * 0.37), torch.cos(i * 1.91)], dim=1) * 2
    y = torch.matmul(X, w) + b
    noise = 0.01 * torch.cos(torch.arange(num_examples, dtype=torch.float32) * 1.9)
    return X, (y + noise).reshape((-1, 1))

true_w = torch.tensor([2, -3.4])
true_b = 4.2
features, labels = synthetic_data(true_w, true_b, 200)
print("features:", features[0], "\nlabel:", labels[0])
print(features.shape, labels.shape)

def data_iter(batch_size, features, labels):
    num_examples = len(features)
    indices = [(7 * k) % num_examples for k in range(num_examples)]  # a fixed shuffle
    for i in range(0, num_examples, batch_size):
        batch_indices = torch.tensor(indices[i: min(i + batch_size, num_examples)])
        yield features[batch_indices], labels[batch_indices]

X, y = next(data_iter(10, features, labels))
print(X.shape, y.shape, X[1].equal(features[7]))

w = torch.zeros((2, 1), requires_grad=True)
b = torch.zeros(1, requires_grad=True)

def linreg(X, w, b):
    return torch.matmul(X, w) + b

def squared_loss(y_hat, y):
    return (y_hat - y.reshape(y_hat.shape)) ** 2 / 2

def sgd(params, lr, batch_size):
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()

lr, num_epochs, batch_size = 0.1, 5, 10
for epoch in range(num_epochs):
    for X, y in data_iter(batch_size, features, labels):
        l = squared_loss(linreg(X, w, b), y)
        l.sum().backward()
        sgd([w, b], lr, batch_size)
    with torch.no_grad():
        train_l = squared_loss(linreg(features, w, b), labels)
        print(f"epoch {epoch + 1}, loss {float(train_l.mean()):f}")

print(f"error in estimating w: {(true_w - w.reshape(true_w.shape)).abs().max() < 0.05}")
print(f"error in estimating b: {abs(true_b - b.item()) < 0.05}")
print(w.requires_grad, w.grad, b.is_leaf, linreg(features[:2], w, b).requires_grad)
with torch.no_grad():
    print(linreg(features[:2], w, b).requires_grad, torch.is_grad_enabled())
    w.mul_(0).add_(true_w.reshape(2, 1))
print(torch.is_grad_enabled(), w.detach().flatten(), w.grad_fn)
