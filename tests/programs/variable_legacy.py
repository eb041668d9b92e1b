import torch
from torch.autograd import Variable

torch.manual_seed(1)
x = Variable(torch.randn(5, 3))
y = Variable(torch.randn(5, 2), requires_grad=False)
w1 = Variable(torch.randn(3, 4), requires_grad=True)
w2 = Variable(torch.randn(4, 2), requires_grad=True)
print(x.requires_grad, w1.requires_grad, type(w1).__name__)

for step in range(50):
    h = x.mm(w1).clamp(min=0)
    y_pred = h.mm(w2)
    loss = (y_pred - y).pow(2).sum()
    if step % 10 == 0:
        print(step, f"{loss.item():.5f}")
    loss.backward()
    w1.data -= 1e-2 * w1.grad.data
    w2.data -= 1e-2 * w2.grad.data
    w1.grad.data.zero_()
    w2.grad.data.zero_()

print(w1.grad)
print(type(loss.grad_fn).__name__, loss.grad_fn.name())
print(y_pred.shape, y_pred.dtype)
