import torch

# A cubic fit to sin(x) on [-pi, pi] with torch.nn, the weights updated by hand ("Learning
# PyTorch with Examples", the nn variant): the inputs are the powers x, x^2, x^3, a Linear
# layer weighs them and Flatten drops the trailing dim, the loss is a summed MSE.
import math

torch.manual_seed(0)

x = torch.linspace(-math.pi, math.pi, 2000)
y = torch.sin(x)
powers = torch.tensor([1, 2, 3])
features = x.unsqueeze(-1).pow(powers)
print("features:", tuple(features.shape), features.dtype)

model = torch.nn.Sequential(
    torch.nn.Linear(3, 1),
    torch.nn.Flatten(0, 1),
)
loss_fn = torch.nn.MSELoss(reduction="sum")
print(model)

learning_rate = 1e-6
for step in range(1500):
    y_pred = model(features)
    loss = loss_fn(y_pred, y)
    if step % 250 == 249:
        print(f"step {step + 1:4d}  loss {loss.item():.3f}")
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for param in model.parameters():
            param -= learning_rate * param.grad

linear = model[0]
a = linear.bias.item()
b, c, d = linear.weight[0].tolist()
print(f"fit: y = {a:.4f} + {b:.4f} x + {c:.4f} x^2 + {d:.4f} x^3")
print("parameter shapes:", [tuple(p.shape) for p in model.parameters()])
with torch.no_grad():
    worst = (model(features) - y).abs().max()
print(f"largest error on the grid: {worst.item():.4f}")
