import torch

# Tensors from Python data: the dtype follows the data.
data = [[1, 2], [3, 4]]
x = torch.tensor(data)
print(x)
print(x.dtype, x.shape, x.dim(), x.numel())

f = torch.tensor([[1.5, -2.0], [0.25, 4.0]])
print(f)
print(f.dtype, f.is_floating_point(), x.is_floating_point())

# Factories with a shape tuple or with sizes one by one.
shape = (2, 3)
print(torch.zeros(shape))
print(torch.ones(2, 3, dtype=torch.int64))
print(torch.full((2, 2), 7.0))
print(torch.arange(5), torch.arange(1, 10, 3))
print(torch.arange(0.0, 1.0, 0.25))
print(torch.linspace(-1, 1, steps=5))
print(torch.eye(3))
print(torch.zeros_like(f), torch.ones_like(x))

# Conversions between dtypes.
print(f.int(), f.long().dtype, x.float(), x.double().dtype)
print(x.to(torch.float32) / 3)
print(torch.tensor([0, 1, 2]).bool())

# Arithmetic: elementwise, with Python scalars, and type promotion.
a = torch.tensor([[1., 2.], [3., 4.]])
b = torch.tensor([[10., 20.], [30., 40.]])
print(a + b, a - b, a * b, b / a, sep="\n")
print(a ** 2, 2 ** a, -a, abs(-a), sep="\n")
print(x * 2.5, (x + 1).dtype, (x / 2).dtype, x // 3, x % 3, sep="\n")
print(torch.tensor([1, 2], dtype=torch.int32) + torch.tensor([1, 2]))

# Elementwise math and comparisons.
print(a.sqrt(), a.exp(), a.log(), torch.sin(a), sep="\n")
print(a > 2, (a >= 2) & (a < 4), a == b / 10, sep="\n")

# Scalars: item(), tolist(), formatting.
s = a.sum()
print(s, s.item(), type(s.item()).__name__, a.tolist())
print(f"{s.item():.3f}", float(s), int(x[1, 1]))

# Printing: wide ranges, negative values, big integers, scientific mode.
print(torch.tensor([1e-5, 1.0, 1e5]))
print(torch.tensor([-0.5, 123.25, 7.0]))
print(torch.tensor([100000, -3, 42]))
print(torch.tensor([[True, False], [False, True]]))
print(torch.arange(12).reshape(3, 4))
