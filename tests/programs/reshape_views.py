import torch

# A 2x3x4 block of numbers, and the many ways to look at it.
x = torch.arange(24)
print(x.view(2, 3, 4))
print(x.view(4, -1).shape, x.reshape(-1, 8).shape, x.view(2, 3, 4).flatten(1).shape)

m = x.view(4, 6)
print(m.is_contiguous(), m.stride())
t = m.t()
print(t.shape, t.is_contiguous(), t.stride())
print(t.contiguous().is_contiguous(), t.contiguous().stride())
print(m.T.shape, m.transpose(0, 1).equal(m.T))

# A view shares its storage: writing through it changes the base.
v = m[1]
v.fill_(-1)
print(m[:2])
col = m[:, 2]
col.mul_(10)
print(m)
print(col.storage_offset(), col.stride(), m[2:, 1:].storage_offset())

# Adding and removing size-1 dimensions.
r = torch.tensor([1.0, 2.0, 3.0])
print(r.unsqueeze(0).shape, r.unsqueeze(1).shape, r[None, :, None].shape)
print(r.view(1, 3, 1).squeeze().shape, r.view(1, 3, 1).squeeze(0).shape)

# permute, the general transpose; moving a channel axis last and back.
img = torch.arange(2 * 3 * 4).view(2, 3, 4)
hwc = img.permute(1, 2, 0)
print(hwc.shape, hwc[1, 2], hwc.permute(2, 0, 1).equal(img))

# Joining and splitting.
a = torch.arange(6).view(2, 3)
b = a * 10
print(torch.cat([a, b]), torch.cat((a, b), dim=1), sep="\n")
print(torch.stack([a, b]).shape, torch.stack([a, b], dim=2).shape)
for part in torch.chunk(torch.arange(10), 3):
    print(part)
print(torch.split(torch.arange(10), [2, 3, 5]))
print(torch.arange(6).view(3, 2).unbind(1))

# Views of views: reshape of a non-contiguous tensor copies, view refuses.
print(t.reshape(-1)[:6])
print(x.view(2, 12).narrow(1, 3, 4))
print(img.flip(2)[0], img.repeat(1, 1, 2).shape, sep="\n")
