import torch

# A matrix and a vector: the vector is repeated along the rows without copying.
matrix = torch.tensor([[1, 2, 3], [4, 5, 6]])
vector = torch.tensor([10, 20, 30])
print("Dimensions", [matrix.shape, vector.shape])
print(matrix + vector)
print(matrix * vector.view(3, 1)[:2, 0].unsqueeze(1))

# Column and row vectors make an outer table.
rows = torch.arange(1, 5).view(4, 1)
cols = torch.arange(1, 4)
table = rows * cols
print(table)
print(table.shape, (rows + cols).shape)

# Normalising rows and columns of a float matrix: keepdim keeps the shapes compatible.
scores = torch.tensor([[1.0, 2.0, 5.0], [3.0, 3.0, 2.0], [0.5, 4.5, 5.0]])
print(scores / scores.sum(dim=1, keepdim=True))
print(scores - scores.mean(dim=0))
centered = scores - scores.mean(dim=1, keepdim=True)
print(centered.sum(dim=1).abs().max() < 1e-6)

# Pairwise squared distances between points, with no loop.
points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [-2.0, 0.5]])
diff = points[:, None, :] - points[None, :, :]
print(diff.shape)
print((diff ** 2).sum(-1))

# Scalars broadcast against anything, and expand is broadcasting made explicit.
print(2 * torch.ones(2, 2) + 0.5)
e = torch.tensor([[7], [8]]).expand(2, 4)
print(e, e.shape, e.stride())
print(torch.zeros(3, 1, 2).add(torch.arange(4).view(4, 1)).shape)

# In-place operations broadcast the right-hand side only.
acc = torch.zeros(2, 3)
acc += torch.tensor([1.0, 2.0, 3.0])
acc.mul_(torch.tensor([[2.0], [-1.0]]))
print(acc)

# Broadcasting with comparison: one-hot rows from labels.
labels = torch.tensor([2, 0, 1, 2])
one_hot = (labels.unsqueeze(1) == torch.arange(3)).float()
print(one_hot)
print(one_hot.sum(0))
