"""Plans: which mixer each layer gets, and what that costs and saves."""
from .plan import LINEAR, MIXERS, Plan, PlanError, load_plan, make_plan, parse_layer_list, parse_ratio
from .report import Shapes, cache_bytes, human_bytes, human_tokens, new_parameters, parse_tokens

__all__ = ["LINEAR", "MIXERS", "Plan", "PlanError", "Shapes", "cache_bytes", "human_bytes", "human_tokens",
           "load_plan", "make_plan", "new_parameters", "parse_layer_list", "parse_ratio", "parse_tokens"]
