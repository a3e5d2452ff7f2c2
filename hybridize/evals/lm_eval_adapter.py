"""lm-evaluation-harness on converted models, when it is installed (`pip install lm-eval`).

The harness's own HF wrapper accepts a live model, so a hybrid (or its teacher) runs its standard
tasks unchanged. Its tasks download their data from the Hugging Face Hub.

    from hybridize.evals.lm_eval_adapter import run_lm_eval
    results = run_lm_eval({"teacher": teacher, "hybrid": hybrid}, tokenizer, ["arc_easy", "hellaswag"], limit=200)
"""
from __future__ import annotations

import torch

from ..errors import UserError


class LmEvalMissing(UserError):
    """lm-evaluation-harness is not installed."""


def _harness():
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
    except ImportError as err:
        raise LmEvalMissing("lm-evaluation-harness is not installed: `pip install lm-eval` "
                            "(its tasks also need Hugging Face Hub access)") from err
    return lm_eval, HFLM


def harness_model(model: torch.nn.Module, tokenizer, batch_size: int = 1, max_length: int | None = None):
    """The harness's HFLM around an already-loaded model (hybrid or not)."""
    _, HFLM = _harness()
    # backend="causal": the harness cannot tell from model_type "hybridize" that this is a decoder-only LM
    return HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=batch_size,
                max_length=max_length or getattr(model.config, "max_position_embeddings", None))


def run_lm_eval(models: dict[str, torch.nn.Module], tokenizer, tasks: list[str], *, limit: int | None = None,
                num_fewshot: int | None = None, batch_size: int = 1) -> dict[str, dict]:
    """{model name: {task: {metric: value}}} from `lm_eval.simple_evaluate` on each model."""
    lm_eval, _ = _harness()
    results = {}
    for name, model in models.items():
        out = lm_eval.simple_evaluate(model=harness_model(model, tokenizer, batch_size), tasks=list(tasks),
                                      limit=limit, num_fewshot=num_fewshot)
        results[name] = {task: {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
                         for task, metrics in out["results"].items()}
    return results
