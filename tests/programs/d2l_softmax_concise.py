import torch

# d2l's concise softmax regression on a small synthetic stand-in for Fashion-MNIST:
# nn.Sequential(nn.Flatten(), nn.Linear(784, 10)) with weights from normal(0, 0.01),
# CrossEntropyLoss(reduction='none'), SGD, and d2l's Accumulator-based epoch and accuracy
# helpers, printing train loss, train accuracy and test accuracy per epoch.
from torch import nn
from torch.utils import data

torch.manual_seed(3)

# Each class is a blurred stripe pattern at its own angle, plus noise.
gen = torch.Generator().manual_seed(99)
rows = torch.arange(28.0).reshape(28, 1)
cols = torch.arange(28.0).reshape(1, 28)
templates = torch.stack([torch.sin(0.4 * (rows * torch.cos(torch.tensor(k * 0.3))
                                          + cols * torch.sin(torch.tensor(k * 0.3))))
                         for k in range(10)])
print("templates:", templates.shape)


def make(n):
    y = torch.randint(0, 10, (n,), generator=gen)
    X = 0.5 + 0.3 * templates[y] + 0.2 * torch.randn(n, 28, 28, generator=gen)
    return X.unsqueeze(1), y


train_iter = data.DataLoader(data.TensorDataset(*make(1024)), batch_size=256, shuffle=True)
test_iter = data.DataLoader(data.TensorDataset(*make(256)), batch_size=256)

net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def init_weights(m):
    if type(m) == nn.Linear:
        nn.init.normal_(m.weight, std=0.01)


net.apply(init_weights)
loss = nn.CrossEntropyLoss(reduction="none")
trainer = torch.optim.SGD(net.parameters(), lr=0.1)


class Accumulator:
    """Sums over n variables."""

    def __init__(self, n):
        self.data = [0.0] * n

    def add(self, *args):
        self.data = [a + float(b) for a, b in zip(self.data, args)]

    def __getitem__(self, idx):
        return self.data[idx]


def accuracy(y_hat, y):
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.type(y.dtype) == y
    return float(cmp.type(y.dtype).sum())


def evaluate_accuracy(net, data_iter):
    net.eval()
    metric = Accumulator(2)
    with torch.no_grad():
        for X, y in data_iter:
            metric.add(accuracy(net(X), y), y.numel())
    return metric[0] / metric[1]


def train_epoch(net, train_iter, loss, updater):
    net.train()
    metric = Accumulator(3)
    for X, y in train_iter:
        y_hat = net(X)
        l = loss(y_hat, y)
        updater.zero_grad()
        l.mean().backward()
        updater.step()
        metric.add(float(l.sum()), accuracy(y_hat, y), y.numel())
    return metric[0] / metric[2], metric[1] / metric[2]


print("initial test acc", f"{evaluate_accuracy(net, test_iter):.4f}")
for epoch in range(5):
    train_loss, train_acc = train_epoch(net, train_iter, loss, trainer)
    test_acc = evaluate_accuracy(net, test_iter)
    print(f"epoch {epoch + 1}: loss {train_loss:.4f}, train acc {train_acc:.4f}, "
          f"test acc {test_acc:.4f}")
W = net[1].weight.detach()
print("weight", tuple(W.shape), f"norm {W.norm().item():.4f}",
      f"bias sum {net[1].bias.sum().item():.4f}")
