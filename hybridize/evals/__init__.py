"""Evaluation: what a conversion cost in quality and what it bought in memory and speed.

- `perplexity`: perplexity, top-1 agreement and KL of several models on the same windows;
- `context`: perplexity against context length;
- `recall`: passkey, multi-query associative recall and span copying, from the model's tokenizer;
- `bench`: prefill latency, decode tokens/s and cache memory (measured vs predicted);
- `suite`: what `hybridize eval` runs; `lm_eval_adapter`: lm-evaluation-harness, when installed.
"""
from .bench import BenchRow, cache_tensor_bytes, markdown_table, predicted_cache_bytes, run_bench
from .context import ContextPoint, perplexity_vs_context
from .perplexity import TextScore, compare_models, perplexity
from .recall import RecallConfig, RecallReport, run_recall
from .suite import EvalOptions, EvalReport, evaluate_models

__all__ = ["BenchRow", "ContextPoint", "EvalOptions", "EvalReport", "RecallConfig", "RecallReport", "TextScore",
           "cache_tensor_bytes", "compare_models", "evaluate_models", "markdown_table", "perplexity",
           "perplexity_vs_context", "predicted_cache_bytes", "run_bench", "run_recall"]
