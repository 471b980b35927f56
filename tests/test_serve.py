"""`mixexperts serve` on loopback with the real SmolLM2, talked to by the official openai client and by OpenAIBackend."""
import contextlib, http.server, json, socket, subprocess, sys, threading, time
from pathlib import Path
import pytest

openai = pytest.importorskip('openai')
from mixexperts.core import MixExpertsError
from mixexperts.remote import OpenAIBackend

EXE = str(Path(sys.executable).parent / 'mixexperts')
MODEL = 'smollm2-135m-instruct'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@contextlib.contextmanager
def serving(args, wait_s=180):
    "A `mixexperts serve` process on a free loopback port: yields (base url, client) once it answers, stops it after."
    port = free_port()
    proc = subprocess.Popen([EXE, 'serve', *args, '--port', str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f'http://127.0.0.1:{port}/v1'
    client = openai.OpenAI(base_url=url, api_key='none', max_retries=0, timeout=120)
    deadline = time.time() + wait_s
    try:
        while True:
            try: client.models.list(); break
            except openai.APIConnectionError:
                if proc.poll() is not None: raise RuntimeError(f'server exited: {proc.stdout.read()}')
                if time.time() > deadline: raise RuntimeError(f'server did not start in {wait_s} s')
                time.sleep(0.5)
        yield url, client
    finally:
        proc.terminate()
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired: proc.kill()


@pytest.fixture(scope='module')
def server():
    with serving(['--model', MODEL]) as (url, _): yield url


@pytest.fixture(scope='module')
def client(server):
    return openai.OpenAI(base_url=server, api_key='none', timeout=120)


def test_models_endpoint(client):
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_chat_completion_with_n_and_usage(client):
    r = client.chat.completions.create(model=MODEL, messages=[{'role': 'user', 'content': 'What is the capital of France?'}],
                                       n=3, temperature=0.8, max_tokens=12, seed=1)
    assert len(r.choices) == 3 and all(c.message.role == 'assistant' for c in r.choices)
    assert r.usage.prompt_tokens > 10 and 0 < r.usage.completion_tokens <= 36
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    again = client.chat.completions.create(model=MODEL, messages=[{'role': 'user', 'content': 'What is the capital of France?'}],
                                           n=3, temperature=0.8, max_tokens=12, seed=1)
    assert [c.message.content for c in r.choices] == [c.message.content for c in again.choices]
    other = client.chat.completions.create(model=MODEL, messages=[{'role': 'user', 'content': 'What is the capital of France?'}],
                                           n=3, temperature=0.8, max_tokens=12, seed=2)
    assert [c.message.content for c in r.choices] != [c.message.content for c in other.choices]   # another seed, other samples


def test_greedy_chat_answers(client):
    r = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=12,
                                       messages=[{'role': 'user', 'content': 'What is the capital of France? Answer in one word.'}])
    assert 'Paris' in r.choices[0].message.content


def test_completions_with_stop(client):
    r = client.completions.create(model=MODEL, prompt='Count: 1, 2, 3,', max_tokens=20, temperature=0, stop=[', 6'])
    assert ', 6' not in r.choices[0].text and r.choices[0].finish_reason == 'stop'


def test_errors_are_openai_errors(client):
    with pytest.raises(openai.NotFoundError, match='not served here'):
        client.chat.completions.create(model='gpt-17', messages=[{'role': 'user', 'content': 'x'}])
    with pytest.raises(openai.BadRequestError, match='temperature must be'):
        client.chat.completions.create(model=MODEL, messages=[{'role': 'user', 'content': 'x'}], temperature=-1)
    with pytest.raises(openai.BadRequestError, match='n must be 1 when using greedy sampling, got 2'):   # as vllm serve refuses it
        client.chat.completions.create(model=MODEL, messages=[{'role': 'user', 'content': 'x'}], temperature=0, n=2)


def test_openai_backend_matches_in_process_scores(server):
    from mixexperts.backends import HFBackend
    from mixexperts.tasks import mmlu_prompt
    remote = OpenAIBackend(MODEL, base_url=server, max_concurrency=4)
    local = HFBackend(MODEL)
    ctx = mmlu_prompt('Which planet is known as the Red Planet?', ['Venus', 'Mars', 'Jupiter', 'Saturn'], 'astronomy')
    reqs = [(ctx, f' {c}') for c in 'ABCD']
    got, want = remote.loglikelihood(reqs), local.loglikelihood(reqs)
    assert [g for _, g in got] == [g for _, g in want]
    assert max(abs(a[0] - b[0]) for a, b in zip(got, want)) < 1e-3
    outs = remote.generate(['The capital of Italy is', [{'role': 'user', 'content': 'Say hi.'}]], n=2, temperature=0.7,
                           max_tokens=6, seed=0)
    assert [len(o) for o in outs] == [2, 2] and remote.usage['requests'] == 4 + 2
    assert remote.usage['prompt_tokens'] > 0 and remote.usage['completion_tokens'] > 0
    greedy = remote.generate(['The capital of Italy is'], n=3, temperature=0, max_tokens=6)[0]   # one request with n=1, repeated
    assert len(greedy) == 3 and len({c.text for c in greedy}) == 1
    assert greedy[0].text == remote.generate(['The capital of Italy is'], temperature=0, max_tokens=6)[0][0].text


class _Flaky(http.server.BaseHTTPRequestHandler):
    "A real HTTP server on loopback answering a scripted sequence of statuses, then a valid chat completion."
    script, seen = [], []

    def do_POST(self):
        self.rfile.read(int(self.headers.get('content-length', 0)))
        status = self.script.pop(0) if self.script else 200
        type(self).seen.append(status)
        body = ({'error': {'message': f'scripted {status}', 'type': 'x'}} if status != 200 else
                {'id': 'c1', 'object': 'chat.completion', 'created': 0, 'model': 'm',
                 'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': 'ok'}, 'finish_reason': 'stop'}],
                 'usage': {'prompt_tokens': 3, 'completion_tokens': 1, 'total_tokens': 4}})
        data = json.dumps(body).encode()
        self.send_response(status); self.send_header('content-type', 'application/json')
        self.send_header('content-length', str(len(data))); self.end_headers(); self.wfile.write(data)

    def log_message(self, *a): pass


@pytest.fixture
def flaky():
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Flaky.seen = []
    yield srv, f'http://127.0.0.1:{srv.server_address[1]}/v1'
    srv.shutdown()


def test_retries_5xx_then_succeeds(flaky):
    _, url = flaky
    _Flaky.script = [503, 502]
    b = OpenAIBackend('m', base_url=url, max_retries=3, backoff=0.01)
    assert b.generate([[{'role': 'user', 'content': 'x'}]])[0][0].text == 'ok'
    assert _Flaky.seen == [503, 502, 200] and b.usage['retries'] == 2


def test_rate_limit_gives_up_with_clear_error(flaky):
    _, url = flaky
    _Flaky.script = [429] * 10
    b = OpenAIBackend('m', base_url=url, max_retries=2, backoff=0.01)
    with pytest.raises(MixExpertsError, match=r'failed 3 times .*HTTP 429'):
        b.generate([[{'role': 'user', 'content': 'x'}]])
    assert _Flaky.seen == [429, 429, 429]


def test_client_errors_are_not_retried(flaky):
    _, url = flaky
    _Flaky.script = [400]
    b = OpenAIBackend('m', base_url=url, max_retries=5, backoff=0.01)
    with pytest.raises(MixExpertsError, match=r'refused the request .*HTTP 400.*scripted 400'):
        b.generate([[{'role': 'user', 'content': 'x'}]])
    assert _Flaky.seen == [400]


# --- a saved router served as a model: `serve --router NAME=FOLDER --route-model ID=PATH` ----------------------------

ROUTED = ['Qwen__Qwen2.5-7B-Instruct', 'google__gemma-2-9b-it']


@pytest.fixture(scope='module')
def router_server(tmp_path_factory):
    import numpy as np
    from mixexperts.core import data_path
    from mixexperts.results import load_results
    from mixexperts.routers import get_router
    rm = load_results(data_path('lm_eval', 'mmlu'), progress=False, models=ROUTED)
    rows = np.flatnonzero(rm.questions['subject'].isin(['virology', 'marketing']).to_numpy())[:60]
    folder = get_router('knn', k=5, tau=0.0).fit(rm.subset(rows)).save(tmp_path_factory.mktemp('router') / 'mom')
    with serving(['--model', MODEL, '--router', f'mom={folder}', *[x for m in ROUTED for x in ('--route-model', f'{m}={MODEL}')]],
                 wait_s=240) as (_, client):
        yield client


def test_router_served_next_to_its_model(router_server):
    assert [m.id for m in router_server.models.list().data] == [MODEL, 'mom']
    msgs = [{'role': 'user', 'content': 'Which virus family does influenza belong to?'}]
    via_router = router_server.chat.completions.create(model='mom', messages=msgs, max_tokens=12, temperature=0)
    direct = router_server.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12, temperature=0)
    # both router choices are mapped to the one loaded SmolLM2, so the routed answer is its greedy answer
    assert via_router.choices[0].message.content == direct.choices[0].message.content != ''
    assert via_router.usage.completion_tokens == direct.usage.completion_tokens


def test_serve_router_errors(tmp_path):
    r = subprocess.run([EXE, 'serve', '--router', 'nofolder'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'NAME=ROUTER_FOLDER' in r.stderr
    r = subprocess.run([EXE, 'serve', '--router', f'x={tmp_path}'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    r = subprocess.run([EXE, 'serve'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and '--router' in r.stderr
