"""torch.nn.functional's tensor functions, run on the server.

Each is the op's function form (tensord._function): its arguments, defaults and checks come
from the op's torch signature in server/core/ops.def, as tensord.<op>'s do; this module only
says which ops torch.nn.functional offers.
"""
from __future__ import annotations

from .. import _function

relu = _function("relu")                    # max(x, 0), elementwise
gelu = _function("gelu")                    # x * Phi(x) (the exact form, torch's default)
sigmoid = _function("sigmoid")              # 1 / (1 + exp(-x)), elementwise
softmax = _function("softmax")              # exp(x) / sum(exp(x)) along dim
log_softmax = _function("log_softmax")      # log(softmax(x, dim)), computed stably
mse_loss = _function("mse_loss")            # the mean of (input - target) ** 2
cross_entropy = _function("cross_entropy")  # class-index targets, mean reduction
linear = _function("linear")                # input @ weight.T + bias (bias optional)
