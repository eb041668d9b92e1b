import torch

# Bit flags packed into integers: set, clear, test, shift.
READ, WRITE, EXEC = 1, 2, 4
perms = torch.tensor([0, 1, 3, 5, 7, 6], dtype=torch.int32)
print(perms & WRITE, perms | EXEC, perms ^ 7, sep="\n")
print(torch.bitwise_and(perms, READ).bool(), ~perms, torch.bitwise_not(perms).dtype)
print(perms << 2, perms >> 1, torch.bitwise_xor(perms, torch.tensor(3, dtype=torch.int32)))
print(torch.tensor([True, False]) & torch.tensor([True, True]), ~torch.tensor([True, False]))

# Division: true, floor and truncating, and floor division of negatives.
a = torch.tensor([7, -7, 7, -7])
b = torch.tensor([2, 2, -2, -2])
print(a / b, torch.div(a, b, rounding_mode="floor"), torch.div(a, b, rounding_mode="trunc"))
print(a // b, a % b, torch.remainder(a, 3), a.div(2.0, rounding_mode="floor"))

# add and sub with alpha.
print(torch.add(a, b, alpha=10), a.sub(b, alpha=2), torch.tensor([1.5]).add(1, alpha=0.5))

# Rounding and its relatives.
v = torch.tensor([-2.5, -1.75, -0.5, 0.5, 1.25, 2.5, 3.14159])
print(v.floor(), v.ceil(), v.round(), v.trunc(), sep="\n")
print(v.frac(), v.sign(), torch.round(v, decimals=2), sep="\n")

# Special functions.
s = torch.tensor([0.0, 0.5, 1.0, 2.0])
print(torch.erf(s), torch.erfinv(torch.tensor([0.0, 0.5, -0.9])), sep="\n")
print(torch.log1p(torch.tensor([1e-8, 1.0])), torch.expm1(torch.tensor([1e-8, 1.0])))

# Closeness tests and exact equality.
x = torch.tensor([1.0, 2.0, 3.0])
y = x + torch.tensor([1e-9, 1e-3, 0.0])
print(torch.isclose(x, y), torch.allclose(x, y), torch.allclose(x, y, atol=1e-2))
print(torch.equal(x, x.clone()), torch.equal(x, y), x.isclose(y, rtol=0, atol=1e-4))

# Interpolation and fused multiply-adds.
start, end = torch.zeros(3), torch.tensor([10.0, 20.0, 30.0])
print(torch.lerp(start, end, 0.25), start.lerp(end, torch.tensor([0.0, 0.5, 1.0])))
print(torch.addcmul(x, end, x, value=0.1), torch.addcdiv(x, end, x, value=-1))

# Clamping with tensor bounds, elementwise maximum and minimum.
lo, hi = torch.tensor([0.0, 1.5, 2.0]), torch.tensor([0.5, 2.5, 2.5])
print(x.clamp(lo, hi), torch.clamp(x, min=lo), torch.maximum(x, hi), torch.minimum(x, lo))
