import torch

# Random draws under seeds. The drawn values depend on the generator's algorithm, so this
# prints only what any correct generator gives: shapes, dtypes, ranges, and repeatability.
torch.manual_seed(0)
a = torch.rand(2, 3)
torch.manual_seed(0)
b = torch.rand(2, 3)
print(a.shape, a.dtype, torch.equal(a, b), bool(((a >= 0) & (a < 1)).all()))

g = torch.Generator().manual_seed(1234)
print(type(g).__name__, g.initial_seed())
x = torch.randn(4, 5, generator=g)
y = torch.randn((4, 5), generator=torch.Generator().manual_seed(1234))
print(x.shape, torch.equal(x, y))

# A generator's state can be saved and restored to replay the same stream.
state = g.get_state()
first = torch.rand(3, generator=g)
g.set_state(state)
print(torch.equal(first, torch.rand(3, generator=g)))

# The size= keyword and the other factories.
r = torch.randint(0, 10, size=(3, 4), generator=g)
print(r.shape, r.dtype, bool(((r >= 0) & (r < 10)).all()))
print(torch.randint(5, (6,)).shape, torch.rand(size=(2, 2)).shape, torch.randn(3, dtype=torch.float64).dtype)
perm = torch.randperm(10, generator=g)
print(perm.dtype, perm.sort().values.equal(torch.arange(10)))

# normal in each of its call forms.
print(torch.normal(0.0, 1.0, size=(2, 3)).shape)
print(torch.normal(torch.zeros(4), 1.0).shape, torch.normal(2.0, torch.ones(5)).shape)
print(torch.normal(torch.zeros(2, 2), torch.ones(2, 2), generator=g).shape)

# bernoulli draws only zeros and ones; probability 0 and 1 are certain.
p = torch.tensor([0.0, 1.0, 0.5, 0.0, 1.0])
d = torch.bernoulli(p, generator=g)
print(d.dtype, d[[0, 1, 3, 4]], bool(((d == 0) | (d == 1)).all()))

# multinomial: without replacement every index appears at most once; zero weights never.
w = torch.tensor([0.0, 10.0, 3.0, 0.0, 1.0])
draw = torch.multinomial(w, 3, replacement=False, generator=g)
print(draw.shape, draw.dtype, draw.sort().values)
many = torch.multinomial(w, 50, replacement=True)
print(many.shape, bool(((many != 0) & (many != 3)).all()))
rows = torch.multinomial(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 4, replacement=True)
print(rows)

# In-place fills and the *_like factories.
t = torch.empty(3, 3).uniform_(-2, 2)
print(t.shape, bool((t.abs() <= 2).all()), torch.rand_like(t).shape, torch.randn_like(t).dtype)
