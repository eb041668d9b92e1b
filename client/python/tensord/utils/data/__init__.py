"""tensord.utils.data: torch.utils.data's datasets, samplers and DataLoader.

``from tensord.utils.data import DataLoader, TensorDataset, random_split`` as from torch. The
samples stay on the server: a DataLoader over a TensorDataset gathers each batch there with one
index_select per tensor (dataloader.py), and the random samplers and random_split make torch's
draws (sampler.py, _random.py). Differences from torch are listed in dataloader.py's head
comment (num_workers runs in this process; the grad_fn of a batch of a tensor that requires
grad).
"""
from ._collate import default_collate, default_convert
from .dataloader import DataLoader, get_worker_info
from .dataset import (ChainDataset, ConcatDataset, Dataset, IterableDataset, Subset,
                      TensorDataset, random_split)
from .sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler,
                      SubsetRandomSampler, WeightedRandomSampler)

__all__ = ["BatchSampler", "ChainDataset", "ConcatDataset", "DataLoader", "Dataset",
           "IterableDataset", "RandomSampler", "Sampler", "SequentialSampler", "Subset",
           "SubsetRandomSampler", "TensorDataset", "WeightedRandomSampler", "default_collate",
           "default_convert", "get_worker_info", "random_split"]
