import torch

x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
y = (w * x ** 2).sum()

(gx,) = torch.autograd.grad(y, x, retain_graph=True)
print("dy/dx:", gx)
gx, gw = torch.autograd.grad(y, [x, w])
print("dy/dx:", gx, "dy/dw:", gw)
print("x.grad after grad():", x.grad)

# gradients of several outputs, weighted
a = torch.tensor([2.0, -1.0], requires_grad=True)
u = a * 3
v = a.exp()
(ga,) = torch.autograd.grad([u, v], a, grad_outputs=[torch.ones(2), torch.tensor([0.5, 2.0])])
print("weighted:", ga)

# an input the outputs do not use
b = torch.tensor([1.0], requires_grad=True)
ga, gb = torch.autograd.grad((a * a).sum(), [a, b], allow_unused=True)
print(ga, gb)

# backward(inputs=...) accumulates only into the inputs named
p = torch.tensor([1.0, 1.0], requires_grad=True)
q = torch.tensor([2.0, 2.0], requires_grad=True)
(p * q).sum().backward(inputs=[q])
print(p.grad, q.grad)
torch.autograd.backward([(p * p).sum(), (q * 3).sum()])
print(p.grad, q.grad)
