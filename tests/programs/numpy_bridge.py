import torch
import numpy as np

# from_numpy shares memory with the array: a write to either side shows in the other.
np_array = np.array([10, 20, 30])
t = torch.from_numpy(np_array)
print(np_array, t, t.dtype)
np_array[0] = 100
print(np_array)
print(t)
t.add_(1)
print(np_array)

# numpy() of a tensor shares too (the tutorial's ones/add_ example).
ones = torch.ones(5)
n = ones.numpy()
print(f"t: {ones}")
print(f"n: {n}")
ones.add_(1)
print(f"t: {ones}")
print(f"n: {n}")
np.add(n, 1, out=n)
print(f"t: {ones}")

# Writes through a view and through indexing reach the shared array.
grid = np.zeros((2, 3), dtype=np.float32)
g = torch.from_numpy(grid)
g[1] = 5
g[:, 0].fill_(-1)
print(grid)
grid[0, 2] = 9.5
print(g.sum(), g[0])

# torch.tensor copies: later writes to the array are not seen.
src = np.arange(4, dtype=np.int32)
copied = torch.tensor(src)
src[:] = 0
print(copied, copied.dtype)

# dtypes map one to one.
for arr in (np.array([1.5, 2.5]), np.array([1.5], dtype=np.float32),
            np.array([1, 2], dtype=np.int64), np.array([True, False])):
    print(arr.dtype, torch.from_numpy(arr).dtype)

# Round trip: numpy computes on a tensor's values, the result comes back as a tensor.
x = torch.linspace(0, 1, 5)
y = torch.from_numpy(np.sqrt(x.numpy()))
print(y, y.dtype)
print(torch.as_tensor(np.eye(2)), np.asarray(torch.arange(3)))
print(type(torch.arange(3).numpy()).__name__, torch.arange(6).view(2, 3).numpy().shape)
