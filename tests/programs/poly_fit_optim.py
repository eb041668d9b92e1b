import torch

# The cubic fit to sin(x) again, now with torch.optim doing the updates ("Learning PyTorch with
# Examples", the optim variant): RMSprop on a summed MSE, zero_grad / backward / step.
import math

torch.manual_seed(1)

x = torch.linspace(-math.pi, math.pi, 1000)
y = torch.sin(x)
xx = x.unsqueeze(-1).pow(torch.tensor([1, 2, 3]))

model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0, 1))
loss_fn = torch.nn.MSELoss(reduction="sum")
optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
print(type(optimizer).__name__, "groups:", len(optimizer.param_groups),
      "lr:", optimizer.param_groups[0]["lr"])

for t in range(600):
    loss = loss_fn(model(xx), y)
    if t % 100 == 99:
        print(t + 1, f"{loss.item():.4f}")
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

layer = model[0]
coeffs = [layer.bias.item()] + layer.weight.detach().flatten().tolist()
print("y = {:.4f} + {:.4f} x + {:.4f} x^2 + {:.4f} x^3".format(*coeffs))
state = optimizer.state_dict()
group = state["param_groups"][0]
print("optimizer state entries:", len(state["state"]), "alpha:", group["alpha"],
      "eps:", group["eps"], "params:", group["params"])
print("square_avg shapes:", [tuple(s["square_avg"].shape) for s in state["state"].values()])
