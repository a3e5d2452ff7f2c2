"""hybridize's Triton kernels for the gated delta rule (GDN: scalar gates, KDA: per-channel gates).

Importing this package raises ImportError when triton is not installed; callers (the dispatch in
hybridize.modeling.gated_delta) fall back to the PyTorch operators. Nothing here imports the rest of
hybridize, so the package can be vendored alone.
"""
try:
    import triton  # noqa: F401
except ImportError as err:  # keep this an ImportError, which callers treat as "not available"
    raise ImportError("hybridize.kernels needs triton") from err

from ._common import CHUNK
from .autograd import DECODE_MAX_T, ChunkGatedDeltaRule, gated_delta_rule
from .decode import recurrent_update
from .l2norm import keys_bwd, keys_fwd, unit_bwd, unit_fwd

__all__ = ["gated_delta_rule", "recurrent_update", "ChunkGatedDeltaRule", "unit_fwd", "unit_bwd", "keys_fwd", "keys_bwd",
           "CHUNK", "DECODE_MAX_T"]
