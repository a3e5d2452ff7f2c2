"""What a plan costs and saves, computed from shapes alone (no weights needed)."""
from __future__ import annotations

from dataclasses import dataclass

from ..modeling.mixers import new_parameter_count, state_bytes
from .plan import LINEAR, Plan



@dataclass(frozen=True)
class Shapes:
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    dtype_bytes: int = 2
    qkv_bias: bool = False
    qk_norm: bool = False

    @classmethod
    def from_config(cls, config, qkv_bias: bool = False, qk_norm: bool = False,
                    dtype_bytes: int = 2) -> "Shapes":
        """Shapes from a transformers config; the bias/norm flags come from the attention modules.
        Caches are counted for bf16 keys and values (`dtype_bytes=2`) unless told otherwise: that is
        how models serve, whatever dtype a checkpoint happens to be stored in (GGUF sources load as
        float32). The linear layers' state is always float32."""
        heads = config.num_attention_heads
        return cls(
            num_layers=config.num_hidden_layers,
            hidden_size=config.hidden_size,
            num_heads=heads,
            num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            dtype_bytes=dtype_bytes,
            qkv_bias=qkv_bias,
            qk_norm=qk_norm,
        )

    def kv_bytes_per_token(self) -> int:
        return 2 * self.num_kv_heads * self.head_dim * self.dtype_bytes


def layer_cache_bytes(shapes: Shapes, mixer: str, context: int, window: int | None, conv_size: int) -> int:
    """Cache bytes of one layer for one sequence of `context` tokens."""
    if mixer in LINEAR:
        return state_bytes(shapes.num_heads, shapes.head_dim, conv_size, shapes.dtype_bytes)
    # transformers' sliding-window cache keeps the last window - 1 positions (the new token is the window's last)
    tokens = min(context, window - 1) if mixer == "swa" else context
    return tokens * shapes.kv_bytes_per_token()


def cache_bytes(shapes: Shapes, plan: Plan | None, context: int, batch: int = 1) -> int:
    """Whole-model cache for `batch` sequences of `context` tokens (plan None: the teacher)."""
    mixers = plan.mixers if plan is not None else ["full"] * shapes.num_layers
    window = plan.window if plan is not None else None
    conv = plan.conv_size if plan is not None else 4
    return batch * sum(layer_cache_bytes(shapes, m, context, window, conv) for m in mixers)


def new_parameters(shapes: Shapes, mixer: str, conv_size: int = 4) -> int:
    """Parameters a converted layer has beyond the attention it replaces (swa and full: none)."""
    if mixer not in LINEAR:
        return 0
    H, D, K = shapes.num_heads, shapes.head_dim, shapes.num_kv_heads
    mixer_params = new_parameter_count(shapes.hidden_size, H, D, "scalar" if mixer == "gdn" else "channel",
                                       conv_size, qkv_bias=shapes.qkv_bias, qk_scale=shapes.qk_norm)
    attention = shapes.hidden_size * D * (2 * H + 2 * K)
    return mixer_params - attention


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_tokens(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10}K"
    return str(n)


def parse_tokens(text: str) -> int:
    """'8K' -> 8192, '1M' -> 1048576, '2048' -> 2048."""
    t = str(text).strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError as err:
        raise ValueError(f"bad token count {text!r}: write e.g. 8K, 128K, 1M or 2048") from err
