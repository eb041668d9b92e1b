import torch

# The bigram model again, as a one-layer network trained by gradient descent (makemore's
# second half): one-hot inputs, logits, softmax by hand, and the loss read off with
# probs[torch.arange(num), ys]. W starts at zero, so the run is the same everywhere.
words = ["mila", "otis", "rhea", "kai", "luna", "ezra", "nora", "ian", "lea", "theo",
         "iris", "owen", "cleo", "eli", "nell", "ravi"]
chars = sorted(set("".join(words)))
stoi = {s: i + 1 for i, s in enumerate(chars)}
stoi["."] = 0
V = len(stoi)

xs, ys = [], []
for w in words:
    cs = ["."] + list(w) + ["."]
    for ch1, ch2 in zip(cs, cs[1:]):
        xs.append(stoi[ch1])
        ys.append(stoi[ch2])
xs = torch.tensor(xs)
ys = torch.tensor(ys)
num = xs.nelement()
print("number of examples:", num, "vocabulary:", V)

xenc = torch.zeros(num, V)
xenc[torch.arange(num), xs] = 1.0
print(xenc.shape, xenc.dtype, xenc.sum().item(), xenc[:3].argmax(1).tolist(), xs[:3].tolist())
alt = torch.eye(V)[xs]
print(torch.equal(alt, xenc))

W = torch.zeros((V, V), requires_grad=True)
for k in range(60):
    logits = xenc @ W
    counts = logits.exp()
    probs = counts / counts.sum(1, keepdims=True)
    loss = -probs[torch.arange(num), ys].log().mean() + 0.01 * (W ** 2).mean()
    if k % 15 == 0:
        print(k, f"{loss.item():.4f}")
    W.grad = None
    loss.backward()
    W.data += -10 * W.grad
print("final", f"{loss.item():.4f}")

# The trained rows are near the counted bigram frequencies.
with torch.no_grad():
    probs = (torch.eye(V) @ W).softmax(dim=1)
    print(probs.shape, torch.allclose(probs.sum(1), torch.ones(V)))
    row = probs[0]
    firsts = torch.tensor([stoi[w[0]] for w in words])
    print("start letters seen:", torch.unique(firsts).numel(), "most likely start:",
          row.argmax().item() in firsts.tolist())
    g = torch.Generator().manual_seed(42)
    ix = torch.multinomial(probs, num_samples=4, replacement=True, generator=g)
    print(ix.shape, ix.dtype, ix.min().item() >= 0, ix.max().item() < V)
