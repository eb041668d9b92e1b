import torch

# A character-level MLP language model in makemore's style, on a small built-in list of
# names: a context of three characters, an nn.Embedding table, a tanh hidden layer and a
# Linear to the next-character logits, trained on minibatches with F.cross_entropy and a
# hand-written SGD step with a learning-rate decay; then the losses of the splits and greedy
# completions of a few prefixes.
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(2147483647)

words = """emma olivia ava isabella sophia mia charlotte amelia harper evelyn abigail emily
elizabeth mila ella avery sofia camila aria scarlett victoria madison luna grace chloe penelope
layla riley zoey nora lily eleanor hannah lillian addison aubrey ellie stella natalie zoe leah
hazel violet aurora savannah audrey brooklyn bella claire skylar lucy paisley everly anna
caroline nova genesis emilia kennedy samantha maya willow kinsley naomi aaliyah elena sarah
ariana allison gabriella alice madelyn cora ruby eva serenity autumn adeline hailey gianna
valentina isla eliana quinn nevaeh ivy sadie piper lydia alexa josephine emery julia delilah
arianna vivian kaylee sophie brielle madeline""".split()
chars = sorted(set("".join(words)))
stoi = {s: i + 1 for i, s in enumerate(chars)}
stoi["."] = 0
itos = {i: s for s, i in stoi.items()}
vocab_size = len(itos)
print(len(words), "words, vocabulary", vocab_size, "longest", max(len(w) for w in words))

block_size = 3


def build_dataset(ws):
    X, Y = [], []
    for w in ws:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X), torch.tensor(Y)


n1 = int(0.8 * len(words))
Xtr, Ytr = build_dataset(words[:n1])
Xdev, Ydev = build_dataset(words[n1:])
print("train", tuple(Xtr.shape), "dev", tuple(Xdev.shape), Xtr.dtype)


class CharMLP(nn.Module):
    def __init__(self, n_embd=8, n_hidden=64):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, n_embd)
        self.hidden = nn.Linear(block_size * n_embd, n_hidden)
        self.out = nn.Linear(n_hidden, vocab_size)

    def forward(self, idx):
        e = self.emb(idx)                       # (B, block_size, n_embd)
        h = torch.tanh(self.hidden(e.view(e.shape[0], -1)))
        return self.out(h)


model = CharMLP()
print(model)
print("parameters:", sum(p.nelement() for p in model.parameters()))

steps = 600
for i in range(steps):
    ix = torch.randint(0, Xtr.shape[0], (32,))
    logits = model(Xtr[ix])
    loss = F.cross_entropy(logits, Ytr[ix])
    for p in model.parameters():
        p.grad = None
    loss.backward()
    lr = 0.1 if i < 400 else 0.03
    for p in model.parameters():
        p.data += -lr * p.grad
    if i % 100 == 0:
        print(f"{i:4d}/{steps}: {loss.item():.4f}")


@torch.no_grad()
def split_loss(X, Y):
    return F.cross_entropy(model(X), Y).item()


print(f"train loss {split_loss(Xtr, Ytr):.4f}  dev loss {split_loss(Xdev, Ydev):.4f}")

# Greedy completion: always the most likely next character, at most 10 of them.
with torch.no_grad():
    for prefix in ["", "a", "el", "so"]:
        context = ([0] * block_size + [stoi[c] for c in prefix])[-block_size:]
        out = list(prefix)
        for _ in range(10):
            ix = model(torch.tensor([context])).argmax(dim=1).item()
            if ix == 0:
                break
            out.append(itos[ix])
            context = context[1:] + [ix]
        print(repr(prefix), "->", "".join(out))
print("embedding table:", tuple(model.emb.weight.shape), "row norms > 0:",
      bool((model.emb.weight.norm(dim=1) > 0).all()))
