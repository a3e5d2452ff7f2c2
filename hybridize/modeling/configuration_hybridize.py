"""HybridizeConfig: the base model's config, flattened, plus the hybrid plan.

config.json of a hybrid checkpoint reads like the original model's (hidden_size, rope, vocab, ...)
so that the base architecture's own forward code finds every field it expects, plus:
    model_type       "hybridize"
    base_model_type  the original model_type ("llama", "qwen3", ...)
    layer_types      per layer: "linear_attention", "sliding_attention" or "full_attention"; this is
                     what transformers' caches read
    sliding_window   the sliding-window layers' window (one per model, as transformers' masks assume)
    hybridize        {"mixers": [...one of gdn/kda/swa/full per layer...], "mixer_options": {...},
                      "base_fields": {original values of the fields above}, "source": ..., "version": ...}
This file travels with hybrid checkpoints: it imports only transformers.
"""
from __future__ import annotations

import copy

from transformers import AutoConfig, PretrainedConfig

# Fields that belong to the hybrid, not the base model; the base's own values sit in base_fields.
_HYBRID_FIELDS = ("layer_types", "sliding_window")
# quantization_config: a GGUF source is de-quantised on load, so the hybrid's weights are plain tensors.
_NOT_BASE = ("model_type", "base_model_type", "hybridize", "auto_map", "architectures", "transformers_version",
             "quantization_config")
CACHE_TYPE = {"gdn": "linear_attention", "kda": "linear_attention", "swa": "sliding_attention"}


class HybridizeConfig(PretrainedConfig):
    model_type = "hybridize"

    def __init__(self, base_model_type: str = "llama", hybridize: dict | None = None, **kwargs):
        self.base_model_type = base_model_type
        self.hybridize = copy.deepcopy(hybridize) if hybridize else {}
        # transformers drops generation parameters that a config class does not declare as fields;
        # the base architectures declare use_cache, so we keep it by hand.
        use_cache = kwargs.pop("use_cache", True)
        super().__init__(**kwargs)
        self.use_cache = use_cache
        mixers = self.hybridize.get("mixers")
        if mixers:
            base_types = self.hybridize.get("base_fields", {}).get("layer_types") or self._uniform_base_types()
            self.layer_types = [CACHE_TYPE.get(m, base_types[i]) for i, m in enumerate(mixers)]
            if "swa" in mixers:
                self.sliding_window = self.hybridize["window"]

    def _uniform_base_types(self) -> list[str]:
        base_window = self.hybridize.get("base_fields", {}).get("sliding_window")
        kind = "sliding_attention" if base_window is not None else "full_attention"
        return [kind] * len(self.hybridize["mixers"])

    @property
    def mixers(self) -> list[str]:
        return list(self.hybridize.get("mixers", []))

    @classmethod
    def from_base(cls, base: PretrainedConfig, hybridize: dict) -> "HybridizeConfig":
        """Wrap a base config; `hybridize` holds at least "mixers" (and "window" if any "swa")."""
        fields = base.to_dict()
        hybrid = copy.deepcopy(hybridize)
        hybrid["base_fields"] = {k: fields[k] for k in _HYBRID_FIELDS if k in fields}
        kwargs = {k: v for k, v in fields.items() if k not in _NOT_BASE}
        config = cls(base_model_type=base.model_type, hybridize=hybrid, **kwargs)
        config._attn_implementation = base._attn_implementation
        return config

    def base_config(self) -> PretrainedConfig:
        """The original architecture's config (its own layer_types / sliding_window restored)."""
        fields = {k: v for k, v in self.to_dict().items() if k not in _NOT_BASE and k not in _HYBRID_FIELDS}
        fields.update(self.hybridize.get("base_fields", {}))
        base = AutoConfig.for_model(self.base_model_type, **fields)
        base._attn_implementation = self._attn_implementation
        return base
