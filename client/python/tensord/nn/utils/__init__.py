"""tensord.nn.utils: torch.nn.utils' gradient clipping (clip_grad.py)."""
from .clip_grad import clip_grad_norm, clip_grad_norm_, clip_grad_value_

__all__ = ["clip_grad_norm_", "clip_grad_norm", "clip_grad_value_"]
