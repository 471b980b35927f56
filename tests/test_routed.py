"""Route, then generate: a router in front of backends groups prompts per chosen model and keeps their order."""
import numpy as np
import pytest

from mixexperts.backends import Backend, Completion
from mixexperts.core import MixExpertsError, data_path
from mixexperts.results import load_results
from mixexperts.routers import get_router
from mixexperts.routed import RoutedBackend, route_generate
from mixexperts.routing_eval import kfold_splits


@pytest.fixture(scope='module')
def mmlu_small():
    "120 real MMLU questions of three subjects, the five strongest of the 25-model pool."
    rm = load_results(data_path('lm_eval', 'mmlu'), progress=False, models=[
        'Qwen__Qwen2.5-7B-Instruct', 'google__gemma-2-9b-it', 'microsoft__Phi-3-mini-4k-instruct', 'Qwen__Qwen3-4B',
        'meta-llama__Llama-3.1-8B-Instruct'])
    rows = np.flatnonzero(rm.questions['subject'].isin(['virology', 'marketing', 'high_school_mathematics']).to_numpy())
    return rm.subset(np.sort(np.random.default_rng(1).choice(rows, 120, replace=False)))


@pytest.fixture(scope='module')
def split(mmlu_small):
    return kfold_splits(mmlu_small, 4, seed=0)[0]


# --- the pipeline ------------------------------------------------------------------------------------------------

class Tagged(Backend):
    "A stand-in backend that answers with its own tag, so routing is visible."
    def __init__(self, tag): self.tag, self.calls = tag, 0
    def _generate(self, prompts, n, **kw):
        self.calls += 1
        return [[Completion(f'{self.tag}', 1, 1)] * n for _ in prompts]
    def _loglikelihood(self, requests, adapter=None): return [(-float(len(self.tag)), False) for _ in requests]


def test_routed_backend_groups_and_orders(mmlu_small, split):
    r = get_router('knn', k=10, tau=0.0).fit(mmlu_small, split[0])
    backends = {m: Tagged(m) for m in r.models}
    rb = RoutedBackend(r, backends)
    texts = mmlu_small.subset(split[1]).questions['text'].tolist()
    want = r.route(texts).chosen
    assert [o[0].text for o in rb.generate(texts, n=2)] == want
    assert sum(b.calls for b in backends.values()) == len(set(want))  # one batched call per chosen model
    assert [x[0] for x in rb.loglikelihood([(t, ' A') for t in texts])] == [-float(len(m)) for m in want]
    recs = route_generate(rb, texts[:3], max_tokens=4)
    assert [x['response'] for x in recs] == want[:3] and set(recs[0]['scores']) == set(r.models)
    with pytest.raises(MixExpertsError, match='no backend for router model'): RoutedBackend(r, {r.models[0]: Tagged('x')})
    with pytest.raises(MixExpertsError, match='needs a user message'): rb.generate([[{'role': 'system', 'content': 'hi'}]])
