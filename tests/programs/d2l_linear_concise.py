import torch

# d2l's concise linear regression: synthetic data y = Xw + b + noise, a DataLoader over a
# TensorDataset for minibatches, nn.Sequential(nn.Linear), weights initialised in place,
# MSELoss and optim.SGD; at the end, how far the learnt w and b are from the true ones.
from torch import nn
from torch.utils import data

torch.manual_seed(42)


def synthetic_data(w, b, num_examples):
    X = torch.normal(0, 1, (num_examples, len(w)))
    y = torch.matmul(X, w) + b
    y += torch.normal(0, 0.01, y.shape)
    return X, y.reshape((-1, 1))


true_w = torch.tensor([2, -3.4])
true_b = 4.2
features, labels = synthetic_data(true_w, true_b, 1000)
print("features:", features.shape, "labels:", labels.shape)


def load_array(data_arrays, batch_size, is_train=True):
    dataset = data.TensorDataset(*data_arrays)
    return data.DataLoader(dataset, batch_size, shuffle=is_train)


batch_size = 10
data_iter = load_array((features, labels), batch_size)
X, y = next(iter(data_iter))
print("one batch:", X.shape, y.shape, X.dtype)
print("batches per epoch:", len(data_iter))

net = nn.Sequential(nn.Linear(2, 1))
net[0].weight.data.normal_(0, 0.01)
net[0].bias.data.fill_(0)
loss = nn.MSELoss()
trainer = torch.optim.SGD(net.parameters(), lr=0.03)

num_epochs = 3
for epoch in range(num_epochs):
    for X, y in data_iter:
        l = loss(net(X), y)
        trainer.zero_grad()
        l.backward()
        trainer.step()
    l = loss(net(features), labels)
    print(f"epoch {epoch + 1}, loss {l:f}")

w = net[0].weight.data
print("error in estimating w:", [round(v, 3) for v in (true_w - w.reshape(true_w.shape)).tolist()])
b = net[0].bias.data
print("error in estimating b:", round((true_b - b).item(), 3))
print("learnt w:", [f"{v:.3f}" for v in w.flatten().tolist()], "b:", f"{b.item():.3f}")
