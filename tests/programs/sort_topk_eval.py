import torch

# Evaluating a classifier's scores: predictions, accuracy, top-k accuracy, ranking.
logits = torch.tensor([[2.0, 0.5, -1.0, 0.1],
                       [0.2, 0.1, 3.0, -0.5],
                       [1.5, 1.7, 0.0, 0.3],
                       [-0.3, 0.8, 0.6, 2.2],
                       [0.9, -1.2, 0.4, 0.0],
                       [0.0, 2.5, 1.0, 1.1]])
labels = torch.tensor([0, 2, 0, 3, 2, 1])

pred = logits.argmax(dim=1)
correct = (pred == labels)
print(pred, correct, f"accuracy {correct.float().mean().item():.4f}")

top2 = logits.topk(2, dim=1)
print(top2.values, top2.indices, sep="\n")
hit2 = (top2.indices == labels.unsqueeze(1)).any(dim=1)
print("top-2 accuracy", hit2.sum().item() / len(labels))
vals, idx = torch.topk(logits[:, 0], k=3, largest=False)
print(vals, idx)

# Sorting: values with their positions, descending, and argsort.
s = logits[2].sort()
print(s.values, s.indices)
desc, order = torch.sort(logits[:, 1], descending=True)
print(desc, order, torch.argsort(logits[:, 1], descending=True))
print(logits.sort(dim=0).values[0], logits.argsort(dim=1)[:, -1].equal(pred))

# Ranking examples by their confidence in the true class.
probs = logits.softmax(dim=1)
true_p = probs[torch.arange(len(labels)), labels]
print(true_p.argsort(descending=True), probs.max(1).indices.equal(pred))

# Order statistics.
v = torch.tensor([7.0, 1.0, 4.0, 9.0, 5.0, 2.0, 8.0])
print(torch.kthvalue(v, 3), v.median(), v.median(dim=0).values)
print(torch.tensor([3, 1, 3, 2, 1, 3]).mode().values)

# Counting classes: unique with counts and the inverse mapping.
uniq, inverse, counts = torch.unique(pred, return_inverse=True, return_counts=True)
print(uniq, inverse, counts)
print(uniq[inverse].equal(pred))

# A confusion matrix, built with one index_put_ that accumulates.
conf = torch.zeros(4, 4, dtype=torch.int64)
conf.index_put_((labels, pred), torch.ones(len(labels), dtype=torch.int64), accumulate=True)
print(conf, conf.diagonal().sum().item(), conf.trace())
