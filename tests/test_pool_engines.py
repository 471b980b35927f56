"""Engines sized for GPUs, rehearsed on the CPU: dtype 'auto' and device_map for every HF load, the vLLM engine's
arguments and SamplingParams built and checked without vLLM, and the token ids of the vLLM path equal to those the
HF backend feeds its model (Gemma 3 270M and SmolLM2), for scoring and generation alike."""
import sys
import pytest
import torch
from transformers import AutoTokenizer
from mixexperts.core import MixExpertsError
from mixexperts.models import resolve_model
from mixexperts.backends import HFBackend, auto_dtype, default_add_bos, load_kwargs, pair_token_ids, prompt_token_ids, torch_dtype
from mixexperts.remote import VLLMBackend, sampling_kwargs, scoring_kwargs, scoring_requests, vllm_available, vllm_engine_kwargs

SMOL, GEMMA = 'smollm2-135m-instruct', 'gemma3-270m'
PROBE = [('The capital of France is', ' Paris'), ('2 + 2 =', ' 4')]


@pytest.fixture(scope='module')
def smol():
    return HFBackend(SMOL, batch_size=4)


def test_pool_engines_dtype_auto_is_fp32_on_cpu(smol):
    assert torch_dtype('auto', 'cpu') == torch.float32 and smol.model.dtype == torch.float32
    assert torch_dtype('bfloat16', 'cuda') == torch.bfloat16      # explicit names need no GPU to resolve
    assert auto_dtype('cuda', bf16_supported=True) == torch.bfloat16   # 'auto' on a GPU, without one
    assert auto_dtype('cuda:0', bf16_supported=False) == torch.float16
    assert auto_dtype('cpu', bf16_supported=True) == auto_dtype('cpu') == torch.float32
    with pytest.raises(MixExpertsError, match="dtype must be one of auto, float32, bfloat16, float16, got 'half'"):
        HFBackend(SMOL, dtype='half')


def test_pool_engines_dtype_is_honoured(smol):
    bf = HFBackend(SMOL, dtype='bfloat16', batch_size=4)
    assert bf.model.dtype == torch.bfloat16
    a, b = bf.loglikelihood(PROBE), smol.loglikelihood(PROBE)
    assert [g for _, g in a] == [g for _, g in b]
    assert max(abs(x - y) for (x, _), (y, _) in zip(a, b)) < 0.5  # bf16 keeps 8 bits of mantissa


def test_pool_engines_device_map_places_the_same_model(smol):
    placed = HFBackend(SMOL, device_map='auto', batch_size=4)   # no GPU here: accelerate puts it all on the CPU
    assert placed.device == 'cpu'
    a, b = placed.loglikelihood(PROBE), smol.loglikelihood(PROBE)
    assert [g for _, g in a] == [g for _, g in b] and [x for x, _ in a] == pytest.approx([x for x, _ in b], abs=1e-4)
    with pytest.raises(MixExpertsError, match='not both'): load_kwargs(device='cpu', device_map='auto')


def test_pool_engines_device_map_without_accelerate_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, 'accelerate', None)         # accelerate cannot be imported in this process now
    with pytest.raises(MixExpertsError, match=r"device_map='auto' needs the accelerate package: pip install accelerate"):
        HFBackend(SMOL, device_map='auto')


def test_pool_engines_search_slot_honours_dtype():
    from mixexperts.experts import QUICK_EXPERTS
    from mixexperts.search import load_experts, make_slot, load_search_config
    ads, _, _ = load_experts(['expert-lora:mmlu'], QUICK_EXPERTS)
    cfg = load_search_config(dict(experts=['expert-lora:mmlu'], utility=dict(name='mc_accuracy', dataset='mmlu', dev=[0, 4]),
                                  dtype='bfloat16'))
    slot = make_slot(ads[0], None, True, 4, engine_args=cfg.engine_args())
    assert slot.backend.base_model().dtype == torch.bfloat16
    assert make_slot(ads[0], None, True, 4).backend.base_model().dtype == torch.float32   # 'auto' on the CPU


def test_pool_engines_vllm_arguments_without_vllm():
    kw = vllm_engine_kwargs(SMOL, tensor_parallel_size=4, gpu_memory_utilization=0.9, max_model_len=8192, enable_lora=True)
    assert kw == dict(model=str(resolve_model(SMOL)), tensor_parallel_size=4, gpu_memory_utilization=0.9, dtype='auto',
                      enable_prefix_caching=True, seed=0, trust_remote_code=False, max_model_len=8192, enable_lora=True,
                      max_lora_rank=16, max_loras=8)
    with pytest.raises(MixExpertsError, match='many GPUs = many engines'): VLLMBackend(SMOL, data_parallel_size=2)
    with pytest.raises(MixExpertsError, match='tensor_parallel_size must be'): VLLMBackend(SMOL, tensor_parallel_size=0)
    assert sampling_kwargs(3, 0.7, 0.9, 32, ['\n\n'], 5) == dict(n=3, temperature=0.7, top_p=0.9, max_tokens=32, stop=['\n\n'], seed=5)
    assert scoring_kwargs() == dict(max_tokens=1, temperature=0.0, prompt_logprobs=1)


@pytest.mark.skipif(vllm_available()[0], reason='vLLM runs here: tests/test_vllm.py constructs the engine')
def test_pool_engines_search_vllm_slot_checks_sizes_first():
    "The search's vLLM slot passes its config's sizes to the engine builder, which checks them before needing vLLM."
    from mixexperts.experts import QUICK_EXPERTS
    from mixexperts.search import load_experts, make_slot
    ads, _, _ = load_experts(['expert-lora:mmlu'], QUICK_EXPERTS)
    with pytest.raises(MixExpertsError, match='max_model_len must be'):
        make_slot(ads[0], None, True, 4, engine='vllm', engine_args=dict(max_model_len=0))
    with pytest.raises(MixExpertsError, match='cannot run here'):
        make_slot(ads[0], None, True, 4, engine='vllm', engine_args=dict(tensor_parallel_size=1, max_model_len=2048))


@pytest.mark.parametrize('name', [GEMMA, SMOL])
def test_pool_engines_vllm_token_ids_equal_hf(name):
    "Scoring and generation ids of the vLLM path (tokenizer loaded on its own, as vLLM loads it) equal the HF backend's."
    hf = HFBackend(name, batch_size=4)
    tok = AutoTokenizer.from_pretrained(str(resolve_model(name)))
    add_bos = default_add_bos(name, resolve_model(name))
    assert add_bos == (name == GEMMA) == hf.add_bos
    reqs = [('Question: Which planet is largest?\nAnswer:', ' Jupiter'), ('The sky is ', 'blue'), ('', 'Hello')]
    for (whole, n_ctx), (c, x) in zip(scoring_requests(tok, reqs, add_bos), reqs):
        ctx_ids, cont_ids = hf.encode_pair(c, x)
        assert whole == ctx_ids + cont_ids and n_ctx == len(ctx_ids)
    for p in ['Question: Which planet is largest?\nAnswer:', [{'role': 'user', 'content': 'Which planet is largest?'}]]:
        assert prompt_token_ids(tok, p, add_bos) == hf.prompt_ids(p, hf.max_length)
    gen = prompt_token_ids(tok, reqs[0][0], add_bos)
    ctx, _ = pair_token_ids(tok, *reqs[0], add_bos)
    assert ctx == gen                                                # scoring's context = generation's prompt
    assert (gen[0] == tok.bos_token_id) == (name == GEMMA)


def test_pool_engines_bad_requests_are_clear_errors(smol):
    from mixexperts.backends import is_chat
    with pytest.raises(MixExpertsError, match="a prompt must be a string or a non-empty list of"): is_chat([{'text': 'hi'}])
    with pytest.raises(MixExpertsError, match='generate takes a list of prompts'): smol.generate('Hello')
    with pytest.raises(MixExpertsError, match=r'a loglikelihood request is a \(context, continuation\) pair'): smol.loglikelihood([('only context',)])
    if not torch.cuda.is_available():
        with pytest.raises(MixExpertsError, match="dtype 'auto' on 'cuda': no CUDA device is visible here"): torch_dtype('auto', 'cuda')
    ctx = 'Question: Which planet is largest?\nAnswer:'
    assert list(smol.score_choices(ctx, [' Jupiter', ' Mars'])) == [ll for ll, _ in smol.loglikelihood([(ctx, ' Jupiter'), (ctx, ' Mars')])]


def test_pool_engines_long_prompts_are_cut_to_the_window(smol):
    "A raw prompt loses its oldest tokens, a chat its oldest messages (never the system one); a question alone too long is an error."
    raw = ' '.join(['word'] * 80)
    with pytest.warns(Warning, match='cut from the left to 16'): ids = smol.prompt_ids(raw, 16)
    assert ids == smol.prompt_ids(raw, 1000)[-16:]
    chat = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': raw}, {'role': 'assistant', 'content': 'ok'},
            {'role': 'user', 'content': 'Which planet is largest?'}]
    keep = [chat[0], chat[3]]
    with pytest.warns(Warning, match='chat cut to its last 2 message'): ids = smol.prompt_ids(chat, len(smol.prompt_ids(keep, 1000)))
    assert ids == smol.prompt_ids(keep, 1000)
    with pytest.raises(MixExpertsError, match='the question alone is'): smol.prompt_ids(keep, 4)


def test_pool_engines_batched_scores_equal_single_ones(smol):
    "One-token continuations after a shared prefix (scored through one KV cache), contexts of very different lengths (split by the"
    " padding budget) and rolling log-likelihoods: the same numbers as each request alone."
    stem = 'Question: Which of these planets is the largest one in the solar system? Answer with one letter.\n'
    reqs = [(stem + 'A. Mars\nAnswer:', ' A'), (stem + 'A. Jupiter\nAnswer:', ' A'), (stem + 'A. Mars\nAnswer: A\nAnswer:', ' B'),
            ('Hi', ' A'), (stem * 2 + 'Answer:', ' B')]   # the third context extends the first
    alone = [smol.loglikelihood([r])[0] for r in reqs]
    for batch in (reqs, [reqs[0], reqs[2]]):          # all of them; a context with the one it extends
        together = smol.loglikelihood(batch)
        want = [alone[reqs.index(r)] for r in batch]
        assert [g for _, g in together] == [g for _, g in want]
        assert [x for x, _ in together] == pytest.approx([x for x, _ in want], abs=1e-4)
    texts = ['The capital of France is Paris.', 'Two plus two is four, and four plus four is eight.']
    rolled = smol.loglikelihood_rolling(texts)
    assert rolled == pytest.approx([smol.loglikelihood_rolling([t])[0] for t in texts], abs=1e-4) and all(x < 0 for x in rolled)


def test_pool_engines_lora_adapters_train_load_and_switch(smol, tmp_path):
    "A LoRA trained here (1 step), loaded twice under two names next to the base model; a wrong folder and a wrong rank are clear errors."
    import json, shutil
    from mixexperts.backends import train_lora
    a = train_lora(SMOL, ['Question: 1+1?\nAnswer: 2'], tmp_path / 'a', r=4, steps=1, batch_size=1, max_length=32)
    shutil.copytree(a, tmp_path / 'b')
    hf = HFBackend(SMOL, batch_size=4)
    assert hf.load_adapter(a) == 'a' and hf.load_adapter(tmp_path / 'b') == 'b'
    base = hf.loglikelihood(PROBE)
    assert base == smol.loglikelihood(PROBE)                       # loaded, not active: the base model's numbers
    with_a = hf.loglikelihood(PROBE, adapter='a')
    assert hf.loglikelihood(PROBE, adapter='b') == with_a and with_a != base   # the same weights under another name
    with pytest.raises(MixExpertsError, match=r"no adapter 'c' loaded; loaded: \['a', 'b'\]"): hf.use_adapter('c')
    with pytest.raises(MixExpertsError, match='is not a peft LoRA adapter folder'): hf.check_adapter(tmp_path)
    cfg = json.loads((a / 'adapter_config.json').read_text())
    shutil.copytree(a, tmp_path / 'r8')
    (tmp_path / 'r8' / 'adapter_config.json').write_text(json.dumps({**cfg, 'r': 8}))
    with pytest.raises(MixExpertsError, match=r'has shape \(4, .* with r=8 needs \(8, '): hf.check_adapter(tmp_path / 'r8')


def test_pool_engines_vllm_argument_errors():
    from mixexperts.remote import check_vllm_args
    with pytest.raises(MixExpertsError, match=r"gpu_memory_utilization is the share of each GPU's memory in \(0, 1\], got 1.5"):
        check_vllm_args(gpu_memory_utilization=1.5)
    with pytest.raises(MixExpertsError, match='vLLM dtype must be auto, float32, bfloat16 or float16'): vllm_engine_kwargs(SMOL, dtype='half')


def test_pool_engines_plain_chat_template_renders_as_the_backend():
    "vllm serve's `--chat-template PLAIN_CHAT_TEMPLATE` (read as vLLM reads a one-line template) renders a chat as HFBackend renders it without a template."
    import codecs
    from mixexperts.backends import PLAIN_CHAT_TEMPLATE, render_prompt
    tok = AutoTokenizer.from_pretrained(str(resolve_model(SMOL)))
    chat = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Which planet is largest?'}]
    own, templated = render_prompt(tok, chat)
    tok.chat_template = None
    plain, untemplated = render_prompt(tok, chat)
    assert templated and not untemplated and plain != own and plain.endswith('Assistant:')
    for t in (PLAIN_CHAT_TEMPLATE, codecs.decode(PLAIN_CHAT_TEMPLATE, 'unicode_escape')):
        assert '\n' not in PLAIN_CHAT_TEMPLATE and tok.apply_chat_template(chat, chat_template=t, tokenize=False, add_generation_prompt=True) == plain
