"""The vLLM path in a rehearsal, on this CPU: `VLLMBackend` over the engine's stand-in (`remote.HFEngineStandIn`), so
every line of it runs here but the imports of vLLM itself — the engine's checked arguments, the requests it sends, the
outputs it reads, LoRA requests, the search's multi-LoRA slot and a live run's engine — on SmolLM2 and Gemma 3 270M,
against the HF backend. tests/test_vllm.py runs the same paths on a GPU with vLLM."""
import pytest
import torch
from mixexperts.core import REHEARSAL_ENV, MixExpertsError
from mixexperts.models import resolve_model
from mixexperts.backends import HFBackend, cut_at_stop
from mixexperts.experts import QUICK_EXPERTS, make_experts
from mixexperts.remote import (HFEngineStandIn, StandInLoRARequest, StandInSamplingParams, StandInTokensPrompt, VLLMBackend,
                               vllm_api, vllm_available, vllm_engine_kwargs)

SMOL, GEMMA = 'smollm2-135m-instruct', 'gemma3-270m'
REQS = [('The capital of France is', ' Paris'), ('The capital of France is', ' Berlin'), ('2 + 2 =', ' 4'),
        ('Question: Which planet is largest?\nAnswer:', ' Jupiter, the gas giant'), ('', 'Hello')]
PROMPTS = ['The capital of France is', [{'role': 'user', 'content': 'Name a colour.'}]]


@pytest.fixture(scope='module', autouse=True)
def rehearsing():
    "A rehearsal for the whole module, on one torch thread (the fastest on a few shared cores)."
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(REHEARSAL_ENV, 'tests/test_vllm_rehearsal.py')
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module', params=[SMOL, GEMMA])
def engines(request):
    "(VLLMBackend on the stand-in, HFBackend) of one model."
    name = request.param
    return name, VLLMBackend(name, max_model_len=1024, enable_lora=True, max_lora_rank=8), HFBackend(name)


@pytest.fixture(scope='module')
def expert():
    "A LoRA expert of SmolLM2 (rank 4), cached by `make_experts`."
    return make_experts(('mmlu',), base=SMOL, **QUICK_EXPERTS)['mmlu']


def test_vllm_backend_builds_the_stand_in_from_checked_arguments(engines):
    name, v, _ = engines
    assert vllm_available() == (True, '') and vllm_api().LLM is HFEngineStandIn and v.api == vllm_api()
    assert isinstance(v.llm, HFEngineStandIn) and v.tok is v.llm.get_tokenizer()
    kw = vllm_engine_kwargs(name, max_model_len=1024, enable_lora=True, max_lora_rank=8)
    assert v.engine_kwargs == kw and kw['model'] == str(resolve_model(name)) and kw['enable_prefix_caching']
    assert v.llm.max_model_len == 1024 and v.llm.enable_lora and v.llm.max_lora_rank == 8


def test_vllm_loglikelihood_equals_hf(engines):
    _, v, hf = engines
    got, ref = v.loglikelihood(REQS), hf.loglikelihood(REQS)
    assert [g for _, g in got] == [g for _, g in ref]
    assert max(abs(a - b) for (a, _), (b, _) in zip(got, ref)) < 1e-3
    assert got[0][0] > got[1][0]    # Paris over Berlin


def test_vllm_greedy_generation_equals_hf(engines):
    _, v, hf = engines
    got, ref = v.generate(PROMPTS, max_tokens=10), hf.generate(PROMPTS, max_tokens=10)
    assert [(c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) for r in got for c in r] == \
           [(c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) for r in ref for c in r]
    twice = v.generate(PROMPTS[:1], n=2, max_tokens=10)[0]   # vLLM refuses n > 1 when greedy: one completion, repeated
    assert len(twice) == 2 and twice[0] == twice[1] == got[0][0] and twice[0] is not twice[1]
    stop = ['.', '\n', ' of']
    for s, full in zip(v.generate(PROMPTS, max_tokens=10, stop=stop), got):   # the greedy text up to the first stop string
        assert s[0].text == cut_at_stop(full[0].text, stop)[0]
        assert s[0].finish_reason == 'stop' or s[0].text == full[0].text
        assert s[0].completion_tokens <= full[0].completion_tokens


def test_vllm_n_samples_seeded(engines):
    _, v, _ = engines
    kw = dict(n=3, temperature=1.0, top_p=0.95, max_tokens=4)
    a, b, c = v.generate(PROMPTS, seed=1, **kw), v.generate(PROMPTS, seed=1, **kw), v.generate(PROMPTS, seed=2, **kw)
    assert [len(r) for r in a] == [3, 3] and all(1 <= x.completion_tokens <= 4 for r in a for x in r)
    assert a == b and a != c
    assert len({x.text for r in a for x in r}) > 2    # the samples differ


def test_vllm_prompt_logprobs_have_vllm_structure_and_ranks(engines):
    _, v, _ = engines
    ids = v.tok('The capital of France is Paris')['input_ids']
    r1, r3 = v.llm.generate([StandInTokensPrompt(prompt_token_ids=ids)] * 2, [StandInSamplingParams(max_tokens=1, prompt_logprobs=k) for k in (1, 3)],
                            use_tqdm=False)
    assert r1.prompt_token_ids == ids and r1.prompt_logprobs[0] is None and len(r1.prompt_logprobs) == len(ids)
    for t, d1, d3 in zip(ids[1:], r1.prompt_logprobs[1:], r3.prompt_logprobs[1:]):
        top = next(i for i, lp in d1.items() if lp.rank == 1)
        assert t in d1 and len(d1) == (1 if t == top else 2) and len(d3) == (3 if d3[t].rank <= 3 else 4)
        assert d1[t].logprob == pytest.approx(d3[t].logprob) and d1[t].rank == d3[t].rank
        assert d1[top].logprob >= d1[t].logprob and (d1[t].rank == 1) == (t == top)
        assert sorted(lp.rank for lp in d3.values())[:3] == [1, 2, 3]
        assert d1[t].decoded_token == v.tok.decode([t])
    out = r1.outputs
    assert len(out) == 1 and len(out[0].token_ids) == 1 and out[0].finish_reason in ('stop', 'length') and out[0].index == 0


def test_vllm_stand_in_types_refuse_what_vllm_refuses():
    with pytest.raises(TypeError): StandInSamplingParams(best_of=2)
    with pytest.raises(TypeError): StandInSamplingParams(2)
    with pytest.raises(ValueError, match='greedy'): StandInSamplingParams(n=2, temperature=0.0)
    with pytest.raises(ValueError, match='empty string'): StandInSamplingParams(stop=['\n', ''])
    with pytest.raises(ValueError, match='temperature'): StandInSamplingParams(temperature=3.0)
    with pytest.raises(ValueError, match='lora_int_id'): StandInLoRARequest('a', 0, '/x')
    with pytest.raises(TypeError): StandInLoRARequest('a', 1, '/x', 'extra', 'fields')
    assert StandInSamplingParams(temperature=0.0, top_p=0.5).top_p == 1.0 and StandInSamplingParams(stop='x').stop == ['x']


def test_vllm_lora_requests(expert):
    v, hf = VLLMBackend(SMOL, enable_lora=True, max_lora_rank=8), HFBackend(SMOL)
    assert v.load_adapter(expert, 'a') == 'a' and hf.load_adapter(expert, 'a') == 'a'
    base, tuned, ref = v.loglikelihood(REQS[:3]), v.loglikelihood(REQS[:3], adapter='a'), hf.loglikelihood(REQS[:3], adapter='a')
    assert max(abs(x - y) for (x, _), (y, _) in zip(tuned, ref)) < 1e-3    # the adapter's scores, as HF computes them
    assert max(abs(x - y) for (x, _), (y, _) in zip(tuned, base)) > 1e-3   # and not the base model's
    assert v.loglikelihood(REQS[:3]) == base                                 # a request without it: the base model again
    assert v.generate(PROMPTS[:1], max_tokens=8, adapter='a')[0][0].text == hf.generate(PROMPTS[:1], max_tokens=8, adapter='a')[0][0].text
    with pytest.raises(MixExpertsError, match="no adapter 'b' loaded"): v.loglikelihood(REQS[:1], adapter='b')
    with pytest.raises(MixExpertsError, match="already loaded"): v.load_adapter(expert, 'a')
    v.load_adapter(expert.parent / 'no-such-adapter', 'missing')                # vLLM loads on the first request ...
    with pytest.raises(MixExpertsError, match='not a peft LoRA adapter folder'): v.loglikelihood(REQS[:1], adapter='missing')
    small = HFEngineStandIn(str(resolve_model(SMOL)), enable_lora=True, max_lora_rank=2)
    with pytest.raises(ValueError, match='greater than max_lora_rank 2'):
        small.generate([StandInTokensPrompt(prompt_token_ids=[1, 2])], lora_request=StandInLoRARequest('a', 1, str(expert)), use_tqdm=False)


def test_vllm_search_slot_scores_candidates_like_hf():
    "The search's vLLM slot (candidates written once as adapters, sent as LoRA requests) scores as the HF hot-swap slot."
    from mixexperts.search import Evaluator, VLLMSlot, load_experts
    ads, _, E = load_experts([f'expert-lora:{d}' for d in ('mmlu', 'medqa')], QUICK_EXPERTS)
    spec = dict(name='mc_accuracy', dataset='mmlu', dev=[0, 2], test=[0, 2])
    cand = [E[0], E[1], 0.5 * (E[0] + E[1])]
    ref = Evaluator(ads[0], spec, engine='hf')
    hf = ref(cand, 'dev')
    ev = Evaluator(ads[0], spec, engine='vllm', engine_args=dict(max_model_len=1024))
    got = ev(cand, 'dev')
    assert isinstance(ev.slot, VLLMSlot) and isinstance(ev.slot.backend.llm, HFEngineStandIn)
    assert ev.slot.backend.engine_kwargs['enable_lora'] and ev.slot.backend.engine_kwargs['max_model_len'] == 1024
    assert len(ev.slot.backend.adapters) == 3                 # one LoRA request per distinct candidate
    assert got == hf and [ev.preds(c, 'dev') for c in cand] == [ref.preds(c, 'dev') for c in cand]   # fp32 both: the same answers
    assert ev(cand, 'dev') == got and ev.stats['cache_hits'] == 3


def test_vllm_data_parallel_size_in_search_config_is_refused_as_many_engines():
    from mixexperts.search import load_experts, load_search_config, make_slot
    cfg = dict(experts=['expert-lora:mmlu'], utility=dict(name='mc_accuracy', dataset='mmlu', dev=[0, 8]), engine='vllm')
    with pytest.raises(MixExpertsError, match='many GPUs = many engines'): load_search_config({**cfg, 'data_parallel_size': 2})
    assert load_search_config({**cfg, 'data_parallel_size': 1}).engine_args() == load_search_config(cfg).engine_args()
    ads, _, _ = load_experts(['expert-lora:mmlu'], QUICK_EXPERTS)
    with pytest.raises(MixExpertsError, match='many GPUs = many engines'):
        make_slot(ads[0], None, False, 4, engine='vllm', engine_args=dict(data_parallel_size=4))


def test_vllm_mux_live_engine_loads_and_releases(expert):
    from mixexperts.mux_live import ModelConfig, load_backend, release_backend
    b = load_backend(ModelConfig('smol', SMOL, engine='vllm', max_model_len=512))
    assert isinstance(b, VLLMBackend) and b.engine_kwargs == vllm_engine_kwargs(SMOL, max_model_len=512)
    assert len(b.generate(PROMPTS[1:], n=2, temperature=0.7, max_tokens=4, seed=0)[0]) == 2
    b.load_adapter(expert, 'a')                                   # a live run's engine has no LoRA slots
    with pytest.raises(ValueError, match='enable_lora'): b.loglikelihood(REQS[:1], adapter='a')
    engine = b.llm
    release_backend(b)
    assert b.llm is None and engine.hf.model is None
    with pytest.raises(RuntimeError, match='shut down'): engine.generate(['hi'], use_tqdm=False)


def test_vllm_stand_in_refuses_requests_vllm_refuses(engines):
    "As vLLM: one sampling_params per prompt when a list is given, no empty prompt, none as long as the engine's max_model_len."
    _, v, _ = engines
    with pytest.raises(ValueError, match='2 prompts need as many sampling_params'):
        v.llm.generate(['a', 'b'], [StandInSamplingParams(max_tokens=1)], use_tqdm=False)
    with pytest.raises(ValueError, match='prompt cannot be empty'):
        v.llm.generate([StandInTokensPrompt(prompt_token_ids=[])], StandInSamplingParams(max_tokens=1), use_tqdm=False)
    with pytest.raises(ValueError, match=r'prompt \(length 1024\) is longer than the maximum model length of 1024'):
        v.llm.generate([StandInTokensPrompt(prompt_token_ids=[1] * 1024)], StandInSamplingParams(max_tokens=1), use_tqdm=False)
