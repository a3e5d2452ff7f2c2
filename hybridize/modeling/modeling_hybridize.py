"""HybridizeForCausalLM: any standard transformers decoder with some attention modules swapped.

The hybrid is built from the original architecture's own classes (LlamaForCausalLM, Qwen3ForCausalLM,
...): the model adopts that model's children, so state-dict keys stay those of the original
(`model.layers.3.self_attn.q_proj.weight`), and runs that class's forward. On top it adds what the
original forward does not know about:
  - a cache with a constant-size state for linear layers (`HybridCache`, from config.layer_types);
  - the 2-D padding mask for linear layers and a sliding-window mask for sliding-window layers,
    computed once per forward and handed to the layers as keyword arguments.

This file travels with hybrid checkpoints (trust_remote_code): it imports only torch, transformers
and its sibling files.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.masking_utils import create_sliding_window_causal_mask

from .cache import HybridCache
from .configuration_hybridize import HybridizeConfig
from .mixers import (DOCUMENT_IDS_KWARG, LINEAR_MIXERS, PADDING_MASK_KWARG, SLIDING_MASK_KWARG, GatedDeltaMixer,
                     gate_kind, make_sliding_window)

ATTENTION_ATTR = "self_attn"
# Class-level facts of the base architecture that transformers reads from the top-level model.
_BASE_CLASS_FACTS = ("_tied_weights_keys", "_no_split_modules", "_keep_in_fp32_modules",
                     "_keep_in_fp32_modules_strict", "_keys_to_ignore_on_load_unexpected",
                     "_keys_to_ignore_on_load_missing")


class UnsupportedModelError(ValueError):
    """The model's architecture does not follow the module interface hybridize converts."""


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder layers: the ModuleList of num_hidden_layers modules that each hold
    a `self_attn` attention module."""
    n = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n and all(hasattr(m, ATTENTION_ATTR) for m in module):
            return module
    raise UnsupportedModelError(
        f"{type(model).__name__}: found no list of {n} decoder layers with a `{ATTENTION_ATTR}` module; "
        "hybridize converts decoders that follow transformers' standard attention interface"
    )


def build_mixer(config: HybridizeConfig, layer_idx: int) -> GatedDeltaMixer:
    """A freshly initialised linear mixer for layer `layer_idx`, shaped from config.hybridize."""
    opts = config.hybridize["mixer_options"]
    return GatedDeltaMixer(
        hidden_size=config.hidden_size,
        num_heads=opts["num_heads"],
        head_dim=opts["head_dim"],
        layer_idx=layer_idx,
        gate=gate_kind(config.mixers[layer_idx]),
        conv_size=opts.get("conv_size", 4),
        qkv_bias=opts.get("qkv_bias", False),
        o_bias=opts.get("o_bias", False),
        qk_scale=opts.get("qk_scale", False),
        norm_eps=opts.get("norm_eps", 1e-6),
        backend=opts.get("backend", "auto"),
    )


def install_mixers(model: nn.Module, config: HybridizeConfig) -> None:
    """Swap in the plan's mixers (randomly initialised; loading fills them) in place."""
    layers = decoder_layers(model)
    for i, mixer in enumerate(config.mixers):
        if mixer in LINEAR_MIXERS:
            setattr(layers[i], ATTENTION_ATTR, build_mixer(config, i))
        elif mixer == "swa":
            make_sliding_window(getattr(layers[i], ATTENTION_ATTR), config.sliding_window)


def document_ids(position_ids: torch.Tensor) -> torch.Tensor | None:
    """Document index of every token when position_ids restart at 0 inside a row, else None."""
    starts = position_ids == 0
    starts[:, 0] = False
    if not bool(starts.any()):
        return None
    return starts.cumsum(-1)


class HybridizePreTrainedModel(PreTrainedModel):
    config_class = HybridizeConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _skip_keys_device_placement = ["past_key_values"]

    @property
    def _inner(self) -> PreTrainedModel | None:
        """The base architecture's decoder (e.g. LlamaModel), kept under its usual name."""
        return getattr(self, getattr(self, "_inner_name", "model"), None)

    def _init_weights(self, module: nn.Module) -> None:
        if getattr(module, "_hybridize_mixer_part", False):
            return  # mixers initialise themselves (GatedDeltaMixer.reset_parameters)
        if self._inner is not None:
            self._inner._init_weights(module)


class HybridizeForCausalLM(HybridizePreTrainedModel, GenerationMixin):
    def __init__(self, config: HybridizeConfig, base_model: PreTrainedModel | None = None):
        super().__init__(config)
        self._wrapping = base_model is not None
        if base_model is None:
            base_config = config.base_config()
            base_cls = AutoModelForCausalLM._model_mapping[type(base_config)]
            base_model = base_cls(base_config)
            install_mixers(base_model, config)
        for fact in _BASE_CLASS_FACTS:
            setattr(self, fact, getattr(type(base_model), fact, None))
        self._base_forward = type(base_model).forward
        for name, child in base_model.named_children():
            self.add_module(name, child)
        for name, value in vars(base_model).items():  # plain attributes the base forward may read
            if not name.startswith("_") and isinstance(value, (int, float, str, bool)) and not hasattr(self, name):
                setattr(self, name, value)
        self._inner_name = base_model.base_model_prefix
        self._first_swa = next((i for i, m in enumerate(config.mixers) if m == "swa"), None)
        self._has_linear = any(m in LINEAR_MIXERS for m in config.mixers)
        self.post_init()

    def init_weights(self):
        if self._wrapping:  # a converted model: every weight is already in place
            self.tie_weights()
            return
        super().init_weights()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # generate() must leave cache creation to forward(), which builds a HybridCache

    def get_input_embeddings(self):
        return self._inner.get_input_embeddings()

    def set_input_embeddings(self, value):
        self._inner.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: HybridCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ):
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = HybridCache(self.config)
        ref = input_ids if input_ids is not None else inputs_embeds
        batch, length = ref.shape[:2]
        if position_ids is None:
            start = past_key_values.get_seq_length() if past_key_values is not None else 0
            position_ids = torch.arange(start, start + length, device=ref.device).unsqueeze(0)
        elif self._has_linear and attention_mask is None and past_key_values is None:
            # Packed documents (position_ids restart at 0), as transformers' masks detect them too.
            documents = document_ids(position_ids)
            if documents is not None:
                kwargs[DOCUMENT_IDS_KWARG] = documents.expand(batch, -1)
        if self._has_linear and attention_mask is not None and attention_mask.dim() == 2:
            kwargs[PADDING_MASK_KWARG] = attention_mask
        if self._first_swa is not None:
            # The mask functions read only the batch size, length, dtype and device of the embeddings.
            stand_in = torch.empty(batch, length, 0, dtype=self.dtype, device=ref.device)
            kwargs[SLIDING_MASK_KWARG] = create_sliding_window_causal_mask(
                config=self.config, inputs_embeds=stand_in, attention_mask=attention_mask,
                past_key_values=past_key_values, position_ids=position_ids, layer_idx=self._first_swa,
            )
        out = self._base_forward(
            self, input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=past_key_values, inputs_embeds=inputs_embeds, labels=labels,
            use_cache=use_cache, logits_to_keep=logits_to_keep, **kwargs,
        )
        if past_key_values is not None:
            past_key_values.advance(length)
        return out


HybridizeConfig.register_for_auto_class()
HybridizeForCausalLM.register_for_auto_class("AutoModelForCausalLM")
