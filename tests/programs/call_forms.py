import torch

# Devices: everything runs on the CPU here, and code written for CUDA falls back cleanly.
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
print(device, torch.cuda.is_available())
x = torch.arange(6, dtype=torch.float32, device=device).view(2, 3)
print(x.device, x.to(device).device, x.cpu().equal(x), x.to(device, torch.float64).dtype)

# Legacy constructors and typed tensors.
print(torch.Tensor([[1, 2], [3, 4]]), torch.FloatTensor([1.5]), torch.LongTensor([1, 2]))
print(torch.DoubleTensor([0.5]).dtype, torch.IntTensor([3]).dtype, torch.BoolTensor([1, 0]))
print(torch.Tensor(2, 3).shape, x.type(), x.long().type(), x.type(torch.int32).dtype)

# new_* factories take their dtype from the tensor they are called on.
ints = torch.tensor([1, 2, 3])
print(x.new_ones(2), ints.new_zeros((2, 2)), x.new_full((3,), 7), ints.new_tensor([4.0, 5.0]))
print(x.new_empty(4).shape, x.new_empty(4).dtype, ints.new_tensor([1.5]).dtype)

# requires_grad= on factories.
w = torch.zeros(3, requires_grad=True)
o = torch.ones(2, 2, requires_grad=True)
r = torch.randn(2, requires_grad=True)
print(w.requires_grad, o.requires_grad, r.requires_grad, torch.arange(3.0, requires_grad=True))
print(torch.full((2,), 1.0, requires_grad=True), torch.eye(2, requires_grad=True).is_leaf)

# numpy-style keywords.
print(x.sum(axis=0), x.mean(axis=1, keepdims=True), torch.max(x, axis=1).values)
print(torch.cat([x, x], axis=0).shape, x.argmax(axis=1), x.std(axis=0))

# out= writes into an existing tensor.
out = torch.empty(2, 3)
torch.add(x, 1, out=out)
print(out)
torch.mul(x, x, out=out)
print(out, torch.matmul(x, x.t(), out=torch.empty(2, 2)))
res = torch.empty(3)
torch.sum(x, 0, out=res)
print(res)

# Tensor introspection.
print(x.dim(), x.ndim, x.numel(), x.nelement(), x.element_size(), ints.element_size())
print(x.is_contiguous(), x.t().is_contiguous(), x.stride(), x.t().stride(), x[1].storage_offset())
print(x.size(), x.size(1), x.size(-1), len(x), x.shape[0])

# *_as: shapes and dtypes borrowed from another tensor.
print(ints.type_as(x), ints.view_as(torch.empty(3, 1)).shape)
print(torch.ones(3).expand_as(torch.empty(2, 3)).shape, torch.arange(6).reshape_as(x))

# .data and .T.
p = torch.ones(2, requires_grad=True)
p.data.mul_(3)
print(p, p.data, p.data.requires_grad)
print(x.T, x.T.shape, torch.arange(3).T)
