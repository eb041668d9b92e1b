import torch

A = torch.arange(6, dtype=torch.float32).view(2, 3)
B = torch.arange(12, dtype=torch.float32).view(3, 4) - 5
v = torch.tensor([1.0, -1.0, 2.0])
w = torch.tensor([0.5, 2.0, -1.0])

# The many spellings of a matrix product.
print(A @ B)
print(torch.mm(A, B).equal(A @ B), A.matmul(B).equal(torch.matmul(A, B)))
print(torch.einsum("ij,jk->ik", A, B).equal(A @ B))

# Vectors: dot, matrix-vector, outer.
print(torch.dot(v, w), v @ w, torch.einsum("i,i->", v, w))
print(torch.mv(A, v), A @ v, torch.einsum("ij,j->i", A, v))
print(torch.outer(v, w))
print(torch.einsum("i,j->ij", v, w).equal(torch.outer(v, w)), v.unsqueeze(1).mm(w.unsqueeze(0)).shape)

# Batches: bmm and matmul broadcasting a matrix over the batch.
batch = torch.arange(24, dtype=torch.float32).view(2, 3, 4) / 10
mats = torch.arange(8, dtype=torch.float32).view(2, 4, 1)
print(torch.bmm(batch, mats))
print((batch @ B.t()).shape, torch.matmul(batch, torch.ones(4)).shape)
print(torch.allclose(torch.einsum("bij,bjk->bik", batch, mats), torch.bmm(batch, mats)))
print(torch.einsum("bij->bji", batch).shape, torch.einsum("bij->b", batch))

# Fused forms: beta * input + alpha * (product).
bias = torch.tensor([1.0, 2.0, 3.0, 4.0])
print(torch.addmm(bias, A, B), torch.addmm(bias, A, B, beta=0.5, alpha=2.0), sep="\n")
base = torch.zeros(2, 3, 1)
print(torch.baddbmm(base, batch, mats, alpha=0.1).squeeze(-1))

# A linear layer by hand, the same three ways.
x = torch.linspace(-1, 1, 6).view(2, 3)
W = torch.tensor([[0.2, -0.4, 0.6], [1.0, 0.0, -1.0]])
b = torch.tensor([0.1, -0.1])
y1 = x @ W.T + b
y2 = torch.addmm(b, x, W.t())
y3 = torch.einsum("ni,oi->no", x, W) + b
print(y1, torch.allclose(y1, y2), torch.allclose(y1, y3))

# Diagonals, traces and integer matmul.
S = torch.arange(9).view(3, 3)
# (torch.einsum("ii->i", S), a diagonal, is not supported yet: README, "Not supported yet")
print(torch.diag(S), S.diagonal(offset=1), torch.trace(S))
print(torch.diag(torch.tensor([1, 2])), S @ S, (S @ S).dtype)
