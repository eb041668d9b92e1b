import torch

# The cubic fit to sin(x) as a Module of our own ("Learning PyTorch with Examples", the custom
# nn.Module variant): four scalar Parameters drawn from randn, forward writes the polynomial
# out, SGD updates them, and a method prints the fitted polynomial.
import math


class Cubic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(()))
        self.b = torch.nn.Parameter(torch.randn(()))
        self.c = torch.nn.Parameter(torch.randn(()))
        self.d = torch.nn.Parameter(torch.randn(()))

    def forward(self, x):
        return self.a + self.b * x + self.c * x ** 2 + self.d * x ** 3

    def describe(self):
        return (f"y = {self.a.item():.4f} + {self.b.item():.4f} x + {self.c.item():.4f} x^2 "
                f"+ {self.d.item():.4f} x^3")


torch.manual_seed(2)
x = torch.linspace(-math.pi, math.pi, 1000)
y = torch.sin(x)

model = Cubic()
print([name for name, _ in model.named_parameters()])
print("start:", model.describe())
criterion = torch.nn.MSELoss(reduction="sum")
optimizer = torch.optim.SGD(model.parameters(), lr=2e-6)
for t in range(1000):
    loss = criterion(model(x), y)
    if t % 200 == 199:
        print(f"iteration {t + 1}: loss {loss.item():.3f}")
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print("result:", model.describe())
print("state_dict keys:", list(model.state_dict().keys()))
print("requires grad:", all(p.requires_grad for p in model.parameters()),
      "count:", sum(p.numel() for p in model.parameters()))
