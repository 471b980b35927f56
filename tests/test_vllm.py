"""VLLMBackend on a GPU machine with vllm installed; skipped with the reason elsewhere (CI has no GPU)."""
import pytest
from mixexperts.remote import vllm_available

ok, why = vllm_available()
pytestmark = pytest.mark.skipif(not ok, reason=f'vLLM cannot run here: {why}')


@pytest.fixture(scope='module')
def engines():
    from mixexperts.remote import VLLMBackend
    from mixexperts.backends import HFBackend
    return VLLMBackend('smollm2-135m-instruct', gpu_memory_utilization=0.3, enable_lora=True, max_lora_rank=8), HFBackend('smollm2-135m-instruct')


def test_n_samples_with_prefix_caching(engines):
    v, _ = engines
    out = v.generate([[{'role': 'user', 'content': 'Name a colour.'}], 'The capital of France is'], n=4, temperature=0.8, max_tokens=8, seed=0)
    assert [len(r) for r in out] == [4, 4] and all(c.completion_tokens > 0 for r in out for c in r)


def test_loglikelihood_agrees_with_transformers(engines):
    v, hf = engines
    reqs = [('The capital of France is', ' Paris'), ('The capital of France is', ' Berlin'), ('2 + 2 =', ' 4')]
    a, b = v.loglikelihood(reqs), hf.loglikelihood(reqs)
    assert [x[1] for x in a] == [x[1] for x in b]
    assert max(abs(x[0] - y[0]) for x, y in zip(a, b)) < 0.05


def test_multi_lora_requests(engines, tmp_path):
    from mixexperts.backends import train_lora
    v, _ = engines
    path = train_lora('smollm2-135m-instruct', ['Question: 1+1?\nAnswer: 2'] * 4, tmp_path / 'a', r=4, steps=2)
    v.load_adapter(path, 'a')
    base = v.loglikelihood([('Question: 1+1?\nAnswer:', ' 2')])[0][0]
    tuned = v.loglikelihood([('Question: 1+1?\nAnswer:', ' 2')], adapter='a')[0][0]
    assert tuned != base


def test_search_candidates_as_vllm_lora_requests():
    "The search's vLLM slot scores candidates (written once as adapters, sent as LoRA requests) as the HF hot-swap slot does."
    import torch
    from mixexperts.experts import QUICK_EXPERTS
    from mixexperts.search import load_experts, make_slot, make_utility, Evaluator
    ads, labels, E = load_experts([f'expert-lora:{d}' for d in ('mmlu', 'medqa')], QUICK_EXPERTS)
    spec = dict(name='mc_accuracy', dataset='mmlu', dev=[0, 8], test=[0, 4])
    cand = [E[0], E[1], 0.5 * (E[0] + E[1])]
    hf = Evaluator(ads[0], spec, engine='hf')(cand, 'dev')
    ev = Evaluator(ads[0], spec, engine='vllm')
    ev.slot = make_slot(ads[0], None, True, 16, engine='vllm')
    got = ev(cand, 'dev')
    assert len(ev.slot.backend.adapters) == 3            # one LoRA request per distinct candidate
    assert max(abs(a - b) for a, b in zip(got, hf)) <= 0.25   # 8 questions: fp16 vs fp32 may flip one or two
    assert ev(cand, 'dev') == got and ev.stats['cache_hits'] == 3
