import torch

# "What is torch.nn really?" retold on synthetic digits: a logistic-regression classifier first
# written with bare tensors (our own log_softmax and negative log likelihood), then rebuilt
# step by step with F.cross_entropy, an nn.Module with nn.Parameter, nn.Linear, torch.optim,
# and finally TensorDataset + DataLoader with a validation set.
import math

import torch.nn.functional as F
from torch import nn, optim
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)

# 28x28 "images": each class is a fixed random pattern plus per-sample noise.
g = torch.Generator().manual_seed(123)
patterns = (torch.rand(10, 784, generator=g) > 0.85).float()
def make(n):
    labels = torch.randint(0, 10, (n,), generator=g)
    noise = torch.rand(n, 784, generator=g)
    images = (0.6 * patterns[labels] + 0.4 * noise * (noise > 0.8)).clamp(0, 1)
    return images, labels
x_train, y_train = make(1000)
x_valid, y_valid = make(300)
n, c = x_train.shape
print(x_train.shape, y_train.shape, y_train.min().item(), y_train.max().item())
print(f"pixel range {x_train.min().item():.4f} .. {x_train.max().item():.4f}")

# 1. Bare tensors.
weights = torch.randn(784, 10) / math.sqrt(784)
weights.requires_grad_()
bias = torch.zeros(10, requires_grad=True)

def log_softmax(x):
    return x - x.exp().sum(-1).log().unsqueeze(-1)

def model(xb):
    return log_softmax(xb @ weights + bias)

def nll(inp, target):
    return -inp[range(target.shape[0]), target].mean()

def accuracy(out, yb):
    return (torch.argmax(out, dim=1) == yb).float().mean()

bs = 64
xb, yb = x_train[0:bs], y_train[0:bs]
preds = model(xb)
print(preds[0].shape, f"first-batch loss {nll(preds, yb).item():.4f}",
      f"accuracy {accuracy(preds, yb).item():.4f}")

lr = 0.1
for i in range((n - 1) // bs + 1):
    xb, yb = x_train[i * bs:i * bs + bs], y_train[i * bs:i * bs + bs]
    loss = nll(model(xb), yb)
    loss.backward()
    with torch.no_grad():
        weights -= weights.grad * lr
        bias -= bias.grad * lr
        weights.grad.zero_()
        bias.grad.zero_()
xb, yb = x_train[0:bs], y_train[0:bs]
print(f"after one epoch by hand: loss {nll(model(xb), yb).item():.4f}",
      f"accuracy {accuracy(model(xb), yb).item():.4f}")

# 2. F.cross_entropy is log_softmax + nll in one.
loss_func = F.cross_entropy
def model(xb):
    return xb @ weights + bias
print(f"cross_entropy on the same batch: {loss_func(model(xb), yb).item():.4f}")

# 3. nn.Module with nn.Parameter, 4. nn.Linear, 5. optim.
class Logistic(nn.Module):
    def __init__(self):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(784, 10) / math.sqrt(784))
        self.bias = nn.Parameter(torch.zeros(10))

    def forward(self, xb):
        return xb @ self.weights + self.bias

class LinearLogistic(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(784, 10)

    def forward(self, xb):
        return self.lin(xb)

def fit_by_hand(model, epochs):
    for epoch in range(epochs):
        for i in range((n - 1) // bs + 1):
            xb, yb = x_train[i * bs:i * bs + bs], y_train[i * bs:i * bs + bs]
            loss = loss_func(model(xb), yb)
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= p.grad * lr
                model.zero_grad()

for cls in (Logistic, LinearLogistic):
    m = cls()
    before = loss_func(m(xb), yb).item()
    fit_by_hand(m, 1)
    print(cls.__name__, [tuple(p.shape) for p in m.parameters()],
          f"loss {before:.4f} -> {loss_func(m(xb), yb).item():.4f}")

m = LinearLogistic()
opt = optim.SGD(m.parameters(), lr=lr)
for i in range((n - 1) // bs + 1):
    xb, yb = x_train[i * bs:i * bs + bs], y_train[i * bs:i * bs + bs]
    loss = loss_func(m(xb), yb)
    loss.backward()
    opt.step()
    opt.zero_grad()
xb, yb = x_train[0:bs], y_train[0:bs]
print(f"with optim.SGD: {loss_func(m(xb), yb).item():.4f}")

# 6. Dataset and DataLoader, with a validation set.
train_ds = TensorDataset(x_train, y_train)
valid_ds = TensorDataset(x_valid, y_valid)
print("dataset lengths:", len(train_ds), len(valid_ds), "item shapes:",
      [tuple(t.shape) for t in train_ds[0]])

def get_data(train_ds, valid_ds, bs):
    return (DataLoader(train_ds, batch_size=bs, shuffle=True),
            DataLoader(valid_ds, batch_size=bs * 2))

def loss_batch(model, loss_func, xb, yb, opt=None):
    loss = loss_func(model(xb), yb)
    if opt is not None:
        loss.backward()
        opt.step()
        opt.zero_grad()
    return loss.item(), len(xb)

def fit(epochs, model, loss_func, opt, train_dl, valid_dl):
    for epoch in range(epochs):
        model.train()
        for xb, yb in train_dl:
            loss_batch(model, loss_func, xb, yb, opt)
        model.eval()
        with torch.no_grad():
            losses, nums = zip(*[loss_batch(model, loss_func, xb, yb) for xb, yb in valid_dl])
        val_loss = sum(l * k for l, k in zip(losses, nums)) / sum(nums)
        print(f"epoch {epoch} validation loss {val_loss:.4f}")

train_dl, valid_dl = get_data(train_ds, valid_ds, bs)
print("batches per epoch:", len(train_dl), len(valid_dl))
model = LinearLogistic()
opt = optim.SGD(model.parameters(), lr=lr)
fit(3, model, loss_func, opt, train_dl, valid_dl)
with torch.no_grad():
    acc = accuracy(model(x_valid), y_valid)
print(f"validation accuracy {acc.item():.4f}")
