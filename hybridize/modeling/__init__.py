"""The model code that ships inside every hybrid checkpoint (flat files, relative imports only)."""
from .cache import HybridCache
from .configuration_hybridize import HybridizeConfig
from .gated_delta import chunk_gated_delta_rule, gated_delta_rule, recurrent_gated_delta_rule
from .mixers import GatedDeltaMixer, make_sliding_window
from .modeling_hybridize import HybridizeForCausalLM, UnsupportedModelError, decoder_layers

__all__ = [
    "HybridCache", "HybridizeConfig", "HybridizeForCausalLM", "GatedDeltaMixer", "UnsupportedModelError",
    "chunk_gated_delta_rule", "decoder_layers", "gated_delta_rule", "make_sliding_window",
    "recurrent_gated_delta_rule",
]

# Files copied next to the weights so that trust_remote_code can load a checkpoint without hybridize.
CHECKPOINT_FILES = ("configuration_hybridize.py", "modeling_hybridize.py", "mixers.py", "cache.py", "gated_delta.py")
