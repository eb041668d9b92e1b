import torch

# A small convolutional network on synthetic 16x16 images of three shapes (a horizontal bar,
# a vertical bar, a diagonal), placed at random spots with noise: Conv2d/ReLU/MaxPool2d twice,
# then Flatten and Linear, trained with CrossEntropyLoss and SGD with momentum.
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
g = torch.Generator().manual_seed(5)


def draw(kind, r, c):
    img = torch.zeros(16, 16)
    if kind == 0:
        img[r, c:c + 6] = 1.0
    elif kind == 1:
        img[r:r + 6, c] = 1.0
    else:
        idx = torch.arange(6)
        img[r + idx, c + idx] = 1.0
    return img


def make(n):
    kinds = torch.randint(0, 3, (n,), generator=g).tolist()
    spots = torch.randint(1, 9, (n, 2), generator=g).tolist()
    images = 0.1 * torch.randn(n, 16, 16, generator=g)
    for i, (k, (r, c)) in enumerate(zip(kinds, spots)):
        images[i] += draw(k, r, c)
    return images.unsqueeze(1), torch.tensor(kinds)


X_train, y_train = make(192)
X_test, y_test = make(48)
print("train:", X_train.shape, [(y_train == k).sum().item() for k in range(3)])


class ShapeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 12, 3, padding=1)
        self.fc = nn.Linear(12 * 4 * 4, 3)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc(x)


net = ShapeNet()
print(net)
print("conv1 weight:", tuple(net.conv1.weight.shape), "fc weight:", tuple(net.fc.weight.shape))
with torch.no_grad():
    h = net.pool(F.relu(net.conv1(X_train[:2])))
print("after the first block:", tuple(h.shape))

criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
for epoch in range(10):
    running = 0.0
    for i in range(0, 192, 32):
        inputs, labels = X_train[i:i + 32], y_train[i:i + 32]
        optimizer.zero_grad()
        loss = criterion(net(inputs), labels)
        loss.backward()
        optimizer.step()
        running += loss.item()
    print(f"[epoch {epoch + 1}] mean loss {running / 6:.4f}")

with torch.no_grad():
    logits = net(X_test)
    predicted = logits.argmax(1)
    correct = (predicted == y_test).sum().item()
print(f"test accuracy: {correct}/{len(y_test)}")
print("confusion:", [[((predicted == p) & (y_test == t)).sum().item() for p in range(3)]
                     for t in range(3)])
