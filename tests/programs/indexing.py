import torch

x = torch.arange(20).view(4, 5)
print(x)

# Integers, slices, negative steps via flip, None and Ellipsis.
print(x[1], x[1, 3], x[-1, -2], x[:, 1], x[1:3, ::2], sep="\n")
print(x[None].shape, x[..., 0], x[:, None, 2].shape)

# Lists, ranges and integer tensors as indices; several of them broadcast together.
print(x[[0, 2]])
print(x[[0, 2], [1, 4]])
print(x[range(4), [0, 1, 2, 3]])
rows = torch.tensor([[0], [3]])
cols = torch.tensor([1, 2, 4])
print(x[rows, cols])
print(x[1:, [0, -1]])
print(x[[3, 3, 0]].shape, x[torch.tensor(2)], x[:, torch.tensor([4, 0])])

# Boolean masks read, and write.
m = x % 3 == 0
print(m.sum(), x[m])
print(x[x > 14], x[torch.tensor([True, False, True, False])])
y = x.clone().float()
y[y > 10] = -1
y[:, 0][y[:, 0] > 4] = 100
print(y)

# Writes with integer and list indices, broadcasting the value.
z = torch.zeros(3, 4, dtype=torch.int64)
z[0] = 7
z[:, 1] = torch.tensor([1, 2, 3])
z[[1, 2], [2, 3]] = torch.tensor([8, 9])
z[2, [0, 1]] += 5
print(z)

# The functional forms.
src = torch.tensor([[10., 11., 12.], [20., 21., 22.]])
print(torch.index_select(src, 1, torch.tensor([2, 0])))
print(src.gather(1, torch.tensor([[0, 0], [2, 1]])))
print(torch.zeros(2, 4).scatter(1, torch.tensor([[3, 1], [0, 2]]), src[:, :2]))
print(torch.zeros(5).scatter_add(0, torch.tensor([0, 1, 1, 4, 4, 4]), torch.ones(6)))
print(torch.zeros(3, 2).index_add_(0, torch.tensor([0, 2, 0]), torch.ones(3, 2)))
print(src.masked_select(src > 15), torch.take(src, torch.tensor([0, 5])))
print(torch.nonzero(torch.tensor([[0, 1], [1, 1]])), torch.tensor([0, 3, 0, 4]).nonzero())
print(torch.where(torch.tensor([1, 0, 2]) > 0))

# Gradients flow through advanced indexing, duplicates accumulate.
w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
w[[0, 2, 2]].sum().backward()
print(w.grad)
