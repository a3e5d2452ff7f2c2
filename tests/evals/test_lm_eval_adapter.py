"""The lm-evaluation-harness adapter: a clear error without it; with it, the harness scores a hybrid
exactly as our own log-likelihood does."""
from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

from hybridize.errors import UserError
from hybridize.evals import lm_eval_adapter
from hybridize.plans import Plan
from hybridize.surgery import convert
from tests.conftest import tiny_model, tiny_tokenizer

HAVE_HARNESS = importlib.util.find_spec("lm_eval") is not None


@pytest.mark.skipif(HAVE_HARNESS, reason="lm-eval is installed")
def test_missing_harness_is_a_user_error():
    with pytest.raises(UserError, match="pip install lm-eval"):
        lm_eval_adapter.harness_model(tiny_model(), tiny_tokenizer())


@pytest.mark.skipif(not HAVE_HARNESS, reason="lm-eval is not installed")
def test_harness_loglikelihood_matches_ours():
    from lm_eval.api.instance import Instance
    hybrid = convert(copy.deepcopy(tiny_model("llama-gqa")), Plan(["gdn", "full", "gdn", "full"]))
    tok = tiny_tokenizer()
    lm = lm_eval_adapter.harness_model(hybrid, tok)
    context, continuation = "w5 w9 w17 w33", " w40 w41"
    [(loglik, _)] = lm.loglikelihood([Instance("loglikelihood", {}, (context, continuation), 0)])
    ids = tok(context + continuation, add_special_tokens=False)["input_ids"]
    n = len(tok(continuation, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logp = torch.log_softmax(hybrid(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    ours = sum(logp[i - 1, ids[i]].item() for i in range(len(ids) - n, len(ids)))
    assert loglik == pytest.approx(ours, abs=1e-4)
