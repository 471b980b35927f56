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
