import torch

# Exam scores of four students in three subjects.
scores = torch.tensor([[72.0, 85.0, 90.0],
                       [64.0, 91.0, 78.0],
                       [88.0, 70.0, 95.0],
                       [91.0, 66.0, 59.0]])
print(scores.sum(), scores.mean(), scores.prod(dim=1) / 1e5)
print("per subject:", scores.mean(dim=0))
print("per student:", scores.sum(1, keepdim=True).shape, scores.sum(1))
print(scores.std(), scores.var(dim=0), scores.std(dim=1, unbiased=False))

# max and min with a dim give values and indices, without a dim a single value.
best = scores.max(dim=0)
print(best.values, best.indices)
values, indices = scores.min(1)
print(values, indices)
print(scores.max(), scores.argmax(), scores.argmax(dim=1), scores.argmin(0))
print(scores.amax(dim=1), scores.amin(dim=(0, 1)))

# Several statistics at once.
var, mean = torch.var_mean(scores, dim=0)
print(var, mean)
std, mean = torch.std_mean(scores)
print(std, mean)

# Counting and logical reductions.
passed = scores >= 70
print(passed.sum(dim=0), passed.all(dim=1), passed.any(), passed.float().mean())
print(torch.count_nonzero(passed, dim=1), torch.count_nonzero(scores - 72))

# Norms and the numerically stable log-sum-exp.
v = torch.tensor([3.0, -4.0, 12.0])
print(v.norm(), v.abs().sum(), torch.logsumexp(v, dim=0))
big = torch.tensor([1000.0, 1000.0])
print(torch.logsumexp(big, 0), big.exp().sum().log())

# Integer reductions keep (or promote to) int64.
counts = torch.tensor([[1, 2], [3, 4]], dtype=torch.int32)
print(counts.sum(), counts.sum().dtype, counts.prod(0), counts.max(), counts.float().mean())
print(torch.tensor([True, True, False]).sum())
print(torch.mean(scores, dim=[0, 1]), scores.sum(dim=-1).dtype)
