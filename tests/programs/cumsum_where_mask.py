import torch

# Running totals: a savings account, and a cumulative distribution sampled by searching it.
deposits = torch.tensor([100.0, -20.0, 50.0, -80.0, 30.0])
balance = deposits.cumsum(dim=0)
print(balance, balance.min(), (balance < 60).nonzero().flatten())
growth = torch.tensor([1.1, 0.9, 1.2, 1.05])
print(growth.cumprod(0), torch.cumprod(growth, dim=0)[-1].item() > 1.2)
print(torch.arange(1, 7).view(2, 3).cumsum(1), torch.ones(3, 3).cumsum(0).dtype)
probs = torch.tensor([0.1, 0.2, 0.4, 0.3])
cdf = probs.cumsum(0)
print(cdf, [int((cdf < u).sum()) for u in (0.05, 0.25, 0.65, 0.95)])

# where: choose elementwise between two tensors, or between a tensor and a scalar.
x = torch.tensor([[-2.0, 0.5], [3.0, -0.1]])
print(torch.where(x > 0, x, torch.zeros_like(x)))
print(torch.where(x > 0, x, 0.0), x.where(x < 1, torch.tensor(1.0)))
print(torch.where(x.abs() < 1, x ** 2 / 2, x.abs() - 0.5))

# masked_fill: a causal attention mask, as in a small transformer.
T = 4
scores = torch.arange(T * T, dtype=torch.float32).view(T, T) / 4
tril = torch.tril(torch.ones(T, T))
wei = scores.masked_fill(tril == 0, float("-inf"))
print(wei)
wei = torch.softmax(wei, dim=-1)
print(wei)
print(wei.sum(-1), (wei.triu(1) == 0).all())
v = torch.arange(T * 2, dtype=torch.float32).view(T, 2)
print(wei @ v)

# The averaging version with cumulative sums: the mean of everything so far.
running_mean = v.cumsum(0) / torch.arange(1, T + 1).unsqueeze(1)
uniform = tril / tril.sum(1, keepdim=True)
print(running_mean, torch.allclose(uniform @ v, running_mean), sep="\n")

# In-place masked fill and clamping with tensor bounds.
grades = torch.tensor([35.0, 72.0, 101.0, -4.0, 88.0])
grades.masked_fill_(grades < 0, 0.0)
print(grades.clamp(max=100.0), grades.clamp(torch.tensor(40.0), torch.full((5,), 95.0)))
print(torch.where(torch.tensor([0.0, 2.0, 0.0, 5.0])))
