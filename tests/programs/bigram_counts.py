import torch

# A character-level bigram model by counting, in the manner of makemore: a table of how often
# each character follows another, normalised into probabilities, sampled with a seeded
# Generator. Sampled names depend on the generator, so only their shapes and bounds print.
words = ["ada", "bela", "cora", "dina", "elio", "fern", "gus", "hana", "ivo", "jun",
         "kira", "leon", "mara", "nico", "olga", "pia", "rafe", "sana", "tomas", "uma",
         "vera", "wen", "yara", "zeno", "anna", "otto", "emma", "liam", "noor", "ines"]
chars = sorted(set("".join(words)))
stoi = {s: i + 1 for i, s in enumerate(chars)}
stoi["."] = 0
itos = {i: s for s, i in stoi.items()}
V = len(stoi)
print(V, "symbols:", "".join(itos[i] for i in range(V)))

N = torch.zeros((V, V), dtype=torch.int32)
xs, ys = [], []
for w in words:
    cs = ["."] + list(w) + ["."]
    for ch1, ch2 in zip(cs, cs[1:]):
        ix1, ix2 = stoi[ch1], stoi[ch2]
        N[ix1, ix2] += 1
        xs.append(ix1)
        ys.append(ix2)
print(N.shape, N.dtype, N.sum().item(), len(xs))
print("starts:", N[0, 1:10])
flat = N.view(-1)
top = flat.topk(3)
for count, ix in zip(top.values.tolist(), top.indices.tolist()):
    print(itos[ix // V] + itos[ix % V], count)
print("most common end:", itos[N[:, 0].argmax().item()])

# Probabilities with add-one smoothing, rows summing to one.
P = (N + 1).float()
P /= P.sum(1, keepdims=True)
print(P.shape, P.dtype, torch.allclose(P.sum(1), torch.ones(V)))

# Average negative log-likelihood of the training bigrams.
xs, ys = torch.tensor(xs), torch.tensor(ys)
log_likelihood = P[xs, ys].log().sum()
nll = -log_likelihood
print(f"{log_likelihood=:.4f}")
print(f"{nll / len(xs):.4f}")

# Sampling: a seeded generator, one multinomial draw per step.
g = torch.Generator().manual_seed(2147483647)
p = torch.rand(3, generator=g)
p = p / p.sum()
draws = torch.multinomial(p, num_samples=100, replacement=True, generator=g)
print(draws.shape, draws.dtype, bool((draws >= 0).all() and (draws < 3).all()))
for _ in range(3):
    out, ix = [], 0
    while True:
        ix = torch.multinomial(P[ix], num_samples=1, replacement=True, generator=g).item()
        if ix == 0 or len(out) == 20:
            break
        out.append(itos[ix])
    print(0 < len(out) + 1 <= 21, all(c in chars for c in out))
