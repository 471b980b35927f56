"""`mixexperts pool serve` rehearsed on CPU: the two shipped LMs served by `mixexperts serve` standing in for `vllm serve`
on pretend GPUs, used through the endpoints file by the official openai client, `mux run`, routed inference and lm-eval's
local-completions, then stopped with no process left; servers that never become healthy are one clear error."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest

openai = pytest.importorskip('openai')
from mixexperts.cli import run_captured
from mixexperts.pool_serve import read_endpoints, lm_eval_args, choose_ports

ROOT = Path(__file__).resolve().parent.parent
MODELS = ['smollm2-135m-instruct', 'gemma3-270m']


def pool_serve(*args, env_path=None, **kw):
    "`python -m mixexperts.cli pool serve ARGS` in the background, this checkout first on the path (`env_path` first on PATH)."
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get('PYTHONPATH')])]))
    if env_path: env['PATH'] = os.pathsep.join([str(env_path), env.get('PATH', '')])
    return subprocess.Popen([sys.executable, '-m', 'mixexperts.cli', 'pool', 'serve', *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def alive(pid:int) -> bool:
    "Whether process `pid` exists and is not a zombie."
    try: stat = Path(f'/proc/{pid}/stat').read_text()
    except (FileNotFoundError, ProcessLookupError): return False
    return stat.rsplit(')', 1)[1].split()[0] != 'Z'


def wait_until(cond, timeout:float, what:str, poll:float=0.2):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline: raise AssertionError(f'timed out waiting for {what}')
        time.sleep(poll)


def environ_of(pid:int) -> dict:
    return dict(kv.split('=', 1) for kv in Path(f'/proc/{pid}/environ').read_text().split('\0') if '=' in kv)


def live_processes(match) -> list:
    "Pids of the live processes whose command line (a list of bytes arguments) satisfies `match`."
    out = []
    for d in Path('/proc').iterdir():
        if not d.name.isdigit(): continue
        try: argv = (d/'cmdline').read_bytes().split(b'\0')
        except OSError: continue
        if match(argv) and alive(int(d.name)): out.append(int(d.name))
    return out


def with_arg(arg:str) -> list:
    "Live processes with `arg` as one argument of their command line."
    return live_processes(lambda argv: arg.encode() in argv)


def listening_on(port:int) -> list:
    "Live processes started with `--port PORT` (a server), not `--base-port PORT` (the pool process)."
    return live_processes(lambda argv: any(a == b'--port' and b == str(port).encode() for a, b in zip(argv, argv[1:])))


def start_one_server(tmp_path, base_port:int) -> tuple:
    "`pool serve` of SmolLM2 on the CPU from a free port above `base_port`, once its server process runs: (pool process, server pid)."
    (tmp_path/'pool.yaml').write_text('- smollm2-135m-instruct\n')
    port = choose_ports(1, base_port=base_port + os.getpid() % 20000)[0]
    proc = pool_serve(tmp_path/'pool.yaml', '-o', tmp_path/'e.json', '--engine', 'mixexperts', '--base-port', port, '--gpus', 'none')
    try: wait_until(lambda: listening_on(port), 30, 'the server process')
    except AssertionError: proc.kill(); raise
    return proc, listening_on(port)[0]


@pytest.fixture(scope='module')
def pool(tmp_path_factory):
    "The two shipped LMs served on pretend GPUs 0 and 1 until the last test of the module stops them."
    d = tmp_path_factory.mktemp('pool')
    (d/'pool.yaml').write_text('- smollm2-135m-instruct\n- {model: gemma3-270m, dtype: float32, chat_template: false}\n')
    ep = d/'endpoints.json'
    proc = pool_serve(d/'pool.yaml', '-o', ep, '--gpus', '0,1', '--engine', 'mixexperts', '--timeout', 240)
    try:
        wait_until(lambda: ep.exists() or proc.poll() is not None, 300, 'the endpoints file')
        assert proc.poll() is None, proc.stderr.read()
        yield dict(proc=proc, dir=d, endpoints=ep, record=read_endpoints(ep, full=True))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try: proc.wait(60)
            except subprocess.TimeoutExpired: proc.kill()


def test_pool_serve_places_servers_on_pretend_gpus(pool):
    rec = pool['record']
    assert list(rec['endpoints']) == MODELS
    assert [s['gpus'] for s in rec['servers']] == ['0', '1']
    # the running processes really carry their devices
    assert [environ_of(s['pid'])['CUDA_VISIBLE_DEVICES'] for s in rec['servers']] == ['0', '1']
    if 'OMP_NUM_THREADS' not in os.environ:   # CPU servers share the cores
        assert [environ_of(s['pid'])['OMP_NUM_THREADS'] for s in rec['servers']] == [str(max(1, os.cpu_count() // 2))] * 2
    assert len({s['base_url'] for s in rec['servers']}) == 2
    assert all(Path(s['log']).exists() and Path(s['log']).parent == pool['dir']/'endpoints.logs' for s in rec['servers'])
    assert all(s['command'][1:5] == ['-m', 'mixexperts.cli', 'serve', '--model'] for s in rec['servers'])
    assert [s['chat_template'] for s in rec['servers']] == [None, False] and rec['servers'][1]['command'][-1] == '--plain-chat'


def test_pool_serve_openai_client_chats_with_each_model(pool):
    for model, url in read_endpoints(pool['endpoints']).items():
        client = openai.OpenAI(base_url=url, api_key='none', max_retries=0, timeout=120)
        assert [m.id for m in client.models.list().data] == [model]
        if model == 'gemma3-270m':   # a base model without a chat template: a completion
            r = client.completions.create(model=model, prompt='The capital of France is', max_tokens=4, temperature=0)
            assert r.choices[0].text.strip() and r.usage.completion_tokens > 0
        else:
            r = client.chat.completions.create(model=model, messages=[{'role': 'user', 'content': 'What is the capital of France? One word.'}],
                                               max_tokens=8, temperature=0)
            assert 'Paris' in r.choices[0].message.content


def test_pool_serve_mux_run_through_endpoints(pool, tmp_path):
    cfg = tmp_path/'mux.yaml'
    cfg.write_text('benchmark: mmlu\nmodels: [smollm2-135m-instruct, {name: gemma, model: gemma3-270m, style: completion}]\n'
                   'n_questions: 2\nk: 2\nmax_tokens: 4\ntemperature: 0.7\ntie_breaker: model_order\nsample: first\n')
    code, out, err = run_captured(['mux', 'run', '--config', cfg, '--endpoints', pool['endpoints'], '-o', tmp_path/'run', '--json'])
    assert code == 0, err
    s = json.loads(out)
    assert s['n_questions'] == 2 and set(s['models']) == {'smollm2-135m-instruct', 'gemma'}
    saved = json.loads((tmp_path/'run'/'config.json').read_text())['config']['models']
    eps = read_endpoints(pool['endpoints'])
    assert [(m['model'], m['base_url']) for m in saved] == [(m, eps[m]) for m in MODELS]   # answered by the servers
    recs = [json.loads(l) for l in (tmp_path/'run'/'questions.jsonl').read_text().splitlines()]
    assert len(recs) == 2
    cfg.write_text('benchmark: mmlu\nmodels: [qwen]\ntie_breaker: model_order\n')
    code, out, err = run_captured(['mux', 'run', '--config', cfg, '--endpoints', pool['endpoints'], '-o', tmp_path/'run3'])
    assert code == 2 and f"{pool['endpoints']} serve no 'qwen'" in err


ROUTER_IDS = ['Qwen__Qwen2.5-7B-Instruct', 'google__gemma-2-9b-it']


@pytest.fixture(scope='module')
def router_folder(tmp_path_factory):
    "A tf-idf router over two of the shipped MMLU models, fitted on 60 virology and marketing questions."
    import numpy as np
    from mixexperts.core import data_path
    from mixexperts.results import load_results
    from mixexperts.routers import get_router
    rm = load_results(data_path('lm_eval', 'mmlu'), progress=False, models=ROUTER_IDS)
    rows = np.flatnonzero(rm.questions['subject'].isin(['virology', 'marketing']).to_numpy())[:60]
    return get_router('tfidf').fit(rm.subset(rows)).save(tmp_path_factory.mktemp('router')/'router')


def test_pool_serve_routed_inference_through_endpoints(pool, router_folder):
    ids, folder = ROUTER_IDS, router_folder
    code, out, err = run_captured(['route', 'predict', folder, '--generate', '--endpoints', pool['endpoints'], '--max-tokens', 4,
                                   '--route-model', f'{ids[0]}=smollm2-135m-instruct', '--route-model', f'{ids[1]}=smollm2-135m-instruct',
                                   '--text', 'Which virus family does influenza belong to?', '--text', 'What is a marketing mix?'])
    assert code == 0, err
    recs = [json.loads(l) for l in out.splitlines()]
    assert len(recs) == 2 and all(r['selected_model'] in ids and r['response'] for r in recs)


@pytest.mark.parametrize('model', MODELS)
def test_pool_serve_lm_eval_local_completions(pool, model):
    "lm-eval's own local-completions model, made from `lm_eval_args`, scores as the package's client does (BOS counted for Gemma)."
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model
    from mixexperts.remote import OpenAIBackend
    args = lm_eval_args(pool['endpoints'], model)
    assert args[:3] == ['--model', 'local-completions', '--model_args'] and 'tokenized_requests=False' in args[3]
    assert ('add_bos_token=True' in args[3]) == (model == 'gemma3-270m')
    lm = get_model(args[1]).create_from_arg_string(args[3])   # exactly what lm-eval's CLI does with these arguments
    reqs = [('Question: What is the capital of France?\nAnswer:', ' Paris'), ('Question: What is the capital of France?\nAnswer:', ' Rome')]
    got = lm.loglikelihood([Instance('loglikelihood', {}, r, i) for i, r in enumerate(reqs)])
    want = OpenAIBackend(model, base_url=read_endpoints(pool['endpoints'])[model]).loglikelihood(reqs)
    assert got[0][0] > got[1][0]
    assert max(abs(g[0] - w[0]) for g, w in zip(got, want)) < 1e-3
    with pytest.raises(Exception, match="serves no model 'qwen'"): lm_eval_args(pool['endpoints'], 'qwen')


def test_pool_serve_router_served_over_the_pool(pool, router_folder):
    "`mixexperts serve --router mom=DIR --endpoints FILE`: the routed model answers with the pool's servers, as they answer directly."
    from mixexperts.pool_serve import is_healthy
    from mixexperts.routers import Router
    eps = read_endpoints(pool['endpoints'])
    code, out, err = run_captured(['serve', '--endpoints', pool['endpoints'], '--model', 'smollm2-135m-instruct'])
    assert code == 2 and '--endpoints answers a --router' in err
    port = choose_ports(1)[0]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get('PYTHONPATH')])]))
    proc = subprocess.Popen([sys.executable, '-m', 'mixexperts.cli', 'serve', '--router', f'mom={router_folder}', '--endpoints', pool['endpoints'],
                             '--route-model', f'{ROUTER_IDS[0]}=smollm2-135m-instruct', '--route-model', f'{ROUTER_IDS[1]}=gemma3-270m',
                             '--port', str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: is_healthy(f'http://127.0.0.1:{port}') or proc.poll() is not None, 120, 'the routed server')
        assert proc.poll() is None, proc.stdout.read()
        routed = openai.OpenAI(base_url=f'http://127.0.0.1:{port}/v1', api_key='none', max_retries=0, timeout=120)
        assert [m.id for m in routed.models.list().data] == ['mom']            # nothing loaded beside the router
        q = 'Which virus family does influenza belong to?'
        chosen = {ROUTER_IDS[0]: 'smollm2-135m-instruct', ROUTER_IDS[1]: 'gemma3-270m'}[Router.load(router_folder).route([q]).chosen[0]]
        direct = openai.OpenAI(base_url=eps[chosen], api_key='none', max_retries=0, timeout=120)
        ask = lambda c, m: c.chat.completions.create(model=m, messages=[{'role': 'user', 'content': q}], max_tokens=6, temperature=0).choices[0].message.content
        assert ask(routed, 'mom') == ask(direct, chosen)
    finally:
        proc.terminate()
        try: proc.wait(30)
        except subprocess.TimeoutExpired: proc.kill()
        proc.stdout.close()


def test_pool_serve_openai_client_errors_are_clear(pool):
    "A model the server does not serve (no retry), a port nobody listens on (retried, then one error), a server without logprobs."
    import http.server, threading
    from mixexperts.core import MixExpertsError
    from mixexperts.remote import OpenAIBackend
    url = read_endpoints(pool['endpoints'])['smollm2-135m-instruct']
    with pytest.raises(MixExpertsError, match=r"refused the request for 'qwen' \(HTTP 404\)"): OpenAIBackend('qwen', base_url=url).generate(['Hi'], max_tokens=2)
    closed = choose_ports(1)[0]
    dead = OpenAIBackend('m', base_url=f'http://127.0.0.1:{closed}/v1', max_retries=1, backoff=0.01, timeout=5)
    with pytest.raises(MixExpertsError, match=r"failed 2 times for 'm' \(last: APIConnectionError\); is the server up"): dead.generate(['Hi'])
    assert dead.usage['retries'] == 1

    class NoLogprobs(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_POST(self):
            self.rfile.read(int(self.headers['Content-Length']))
            body = json.dumps({'id': 'c', 'object': 'text_completion', 'created': 0, 'model': 'm',
                               'choices': [{'index': 0, 'text': 'x', 'finish_reason': 'length', 'logprobs': None}]}).encode()
            self.send_response(200); self.send_header('Content-Type', 'application/json'); self.send_header('Content-Length', str(len(body)))
            self.end_headers(); self.wfile.write(body)
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), NoLogprobs)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with pytest.raises(MixExpertsError, match="returned no logprobs for 'm'; it must support echo=True"):
            OpenAIBackend('m', base_url=f'http://127.0.0.1:{srv.server_address[1]}/v1').loglikelihood([('a', ' b')])
    finally: srv.shutdown(); srv.server_close()


def test_pool_serve_stops_every_server_on_sigint(pool):   # last: it ends the module's pool
    proc, pids = pool['proc'], [s['pid'] for s in pool['record']['servers']]
    assert all(alive(p) for p in pids)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert 'ready: smollm2-135m-instruct' in out and 'lm-eval for gemma3-270m: --model local-completions' in out and 'stopped 2 server(s)' in out
    assert not any(alive(p) for p in pids) and not pool['endpoints'].exists()


def test_pool_serve_sigterm_while_starting_leaves_no_server(tmp_path):
    proc, child = start_one_server(tmp_path, 21000)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and 'stopped before every server was healthy' in out, err
    assert not alive(child) and not (tmp_path/'e.json').exists()


def test_pool_serve_sigkill_takes_its_servers_along(tmp_path):
    proc, child = start_one_server(tmp_path, 41000)
    proc.kill(); proc.wait(10)
    wait_until(lambda: not alive(child), 20, 'the orphaned server to die')   # the parent-death signal


def test_pool_serve_model_that_fails_to_load_is_one_error(tmp_path):
    bad = tmp_path/'not_a_model'
    bad.mkdir()
    (tmp_path/'pool.yaml').write_text(f'- {bad}\n')
    proc = pool_serve(tmp_path/'pool.yaml', '-o', tmp_path/'e.json', '--engine', 'mixexperts', '--timeout', 120, '--gpus', 'none')
    out, err = proc.communicate(timeout=150)
    log = tmp_path/'e.logs'/'00_not_a_model.log'
    assert proc.returncode == 2 and err.count('\n') == 1 and 'Traceback' not in err, err
    assert err.startswith(f"error: the server for model {str(bad)!r} exited with code 2 before it was healthy; see its log {log}")
    assert 'holds no config.json' in err and log.exists() and not (tmp_path/'e.json').exists()


def test_pool_serve_server_not_healthy_in_time(tmp_path):
    (tmp_path/'pool.yaml').write_text('- smollm2-135m-instruct\n')
    port = choose_ports(1, base_port=31000 + os.getpid() % 20000)[0]
    proc = pool_serve(tmp_path/'pool.yaml', '-o', tmp_path/'e.json', '--engine', 'mixexperts', '--timeout', 1, '--base-port', port,
                      '--gpus', 'none')
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and 'Traceback' not in err, err
    assert err.startswith("error: the server for model 'smollm2-135m-instruct' was not healthy within 1 s; see its log ")
    assert '00_smollm2-135m-instruct.log' in err and not listening_on(port)


def test_pool_serve_bad_pool_files_and_dry_run(tmp_path):
    (tmp_path/'pool.yaml').write_text('- smollm2-135m-instruct\n- {model: gemma3-270m, max_length: 4096}\n- {model: org/big, tp: 2}\n')
    code, out, err = run_captured(['pool', 'serve', tmp_path/'pool.yaml', '-o', tmp_path/'e.json', '--engine', 'vllm', '--gpus', '0,1,2,3', '--dry-run'])
    assert code == 0, err
    plan = json.loads(out)
    assert [s['gpus'] for s in plan] == ['0', '1', '2,3'] and all(s['command'][:2] == ['vllm', 'serve'] for s in plan)
    gemma = plan[1]['command']
    assert gemma[gemma.index('--max-model-len') + 1] == '4096' and gemma[gemma.index('--served-model-name') + 1] == 'gemma3-270m'
    assert plan[2]['command'][plan[2]['command'].index('--tensor-parallel-size') + 1] == '2'
    for text, args, msg in [('- {model: a, tp: 5}', ['--gpus', '0,1'], "model 'a' asks for tp=5 GPUs but only 2"),
                            ('- a\n- b\n- a', [], "models[2].model: 'a' duplicates models[0]"),
                            ('- {model: a, temperature: 1}', [], "models[0]: config key 'temperature' is not supported"),
                            ('- a', ['--engine', 'vllm', '--gpus', 'none'], 'vllm serve needs GPUs')]:
        (tmp_path/'bad.yaml').write_text(text)
        code, out, err = run_captured(['pool', 'serve', tmp_path/'bad.yaml', '-o', tmp_path/'e.json', *args])
        assert code == 2 and msg in err and err.count('\n') == 1, err
        assert str(tmp_path/'bad.yaml') in err or 'GPU' in err


def test_pool_serve_vllm_engine_execs_the_planned_command(tmp_path):
    "The vllm path end to end with one substitution: a `vllm` on PATH that records how it was called, then fails."
    bin_ = tmp_path/'bin'; bin_.mkdir()
    (bin_/'vllm').write_text('#!/bin/sh\nprintf "%s\\n" "$CUDA_VISIBLE_DEVICES" "$@" > "$0.called"\necho "stand-in vllm: no engine here"\nexit 1\n')
    (bin_/'vllm').chmod(0o755)
    (tmp_path/'pool.yaml').write_text('- {model: org/some-model, tp: 2, max_length: 1024}\n')
    port = choose_ports(1, base_port=23000 + os.getpid() % 20000)[0]
    proc = pool_serve(tmp_path/'pool.yaml', '-o', tmp_path/'e.json', '--engine', 'vllm', '--gpus', '2,3', '--base-port', port,
                      env_path=bin_)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.startswith("error: the server for model 'org/some-model' exited with code 1 before it was healthy; "
                                                   f"see its log {tmp_path/'e.logs'/'00_org__some-model.log'} (last line: stand-in vllm: no engine here)"), err
    called = (bin_/'vllm.called').read_text().splitlines()
    assert called == ['2,3', 'serve', 'org/some-model', '--served-model-name', 'org/some-model', '--host', '127.0.0.1', '--port', str(port),
                      '--tensor-parallel-size', '2', '--dtype', 'auto', '--gpu-memory-utilization', '0.9', '--seed', '0', '--max-model-len', '1024']


def test_pool_serve_devices_and_more_bad_input(tmp_path, monkeypatch):
    (tmp_path/'pool.yaml').write_text('models: [smollm2-135m-instruct, gemma3-270m]\n')
    dry = lambda *a: run_captured(['pool', 'serve', tmp_path/'pool.yaml', '-o', tmp_path/'e.json', '--dry-run', *a])
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '4,5')
    code, out, err = dry('--engine', 'mixexperts')
    assert code == 0 and [s['gpus'] for s in json.loads(out)] == ['4', '5']   # the visible GPUs, one per server
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES')
    code, out, err = dry('--engine', 'mixexperts')
    assert code == 0 and [s['gpus'] for s in json.loads(out)] == [None, None]   # no GPU here: CPU servers
    import socket
    with socket.socket() as busy:   # a taken port is skipped
        busy.bind(('127.0.0.1', 0)); taken = busy.getsockname()[1]
        code, out, err = dry('--engine', 'mixexperts', '--base-port', taken)
        ports = [int(s['base_url'].rsplit(':', 1)[1].split('/')[0]) for s in json.loads(out)]
        assert code == 0 and taken not in ports and min(ports) > taken and len(set(ports)) == 2
    monkeypatch.setenv('PATH', str(tmp_path))
    code, out, err = run_captured(['pool', 'serve', tmp_path/'pool.yaml', '-o', tmp_path/'e.json', '--engine', 'vllm', '--gpus', '0,1'])
    assert code == 2 and "vllm is not installed here (pip install 'mixexperts[gpu]')" in err and not (tmp_path/'e.logs').exists()
    for text, msg in [('- {model: a, tp: 0}', "models[0].tp: tp must be a positive integer"), ('- [unclosed', 'not valid YAML'),
                      ('{models: [a], gpus: 2}', "key 'gpus' is not supported"), ('- a\n- b\n- c', 'the pool needs 3 GPUs')]:
        (tmp_path/'bad.yaml').write_text(text)
        code, out, err = run_captured(['pool', 'serve', tmp_path/'bad.yaml', '-o', tmp_path/'e.json', '--gpus', '0,1', '--dry-run'])
        assert code == 2 and msg in err, err
    (tmp_path/'e.json').write_text('{"endpoints": {"a": "not-a-url"}}')
    with pytest.raises(Exception, match=r"e\.json: an endpoints file holds 'endpoints'"): read_endpoints(tmp_path/'e.json')


def test_pool_serve_server_dying_while_serving_stops_the_pool(tmp_path):
    "A stand-in `vllm` that answers /health (a static file server), and for one model exits after a few seconds."
    bin_ = tmp_path/'bin'; bin_.mkdir()
    (tmp_path/'www').mkdir(); (tmp_path/'www'/'health').write_text('ok')
    (bin_/'vllm').write_text(f'''#!/bin/sh
model=$2; while [ $# -gt 0 ]; do [ "$1" = --port ] && port=$2; shift; done
case $model in *dies*) life=3;; *) life=600;; esac
timeout $life {sys.executable} -m http.server $port --bind 127.0.0.1 --directory {tmp_path/'www'}
exit 3
''')
    (bin_/'vllm').chmod(0o755)
    (tmp_path/'pool.yaml').write_text('- org/lives\n- org/dies\n')
    ep = tmp_path/'e.json'
    proc = pool_serve(tmp_path/'pool.yaml', '-o', ep, '--engine', 'vllm', '--gpus', '0,1', env_path=bin_)
    wait_until(lambda: ep.exists() or proc.poll() is not None, 30, 'the endpoints file')
    pids = [s['pid'] for s in read_endpoints(ep, full=True)['servers']]
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and 'Traceback' not in err, err
    assert err.startswith(f"error: the server for model 'org/dies' exited with code 3 while serving; see its log {tmp_path/'e.logs'/'01_org__dies.log'}")
    assert not any(alive(p) for p in pids) and not ep.exists()   # the healthy one was stopped with it
    # and so was what it started in a process group of its own (`timeout` makes one): stopping goes by session
    wait_until(lambda: not with_arg(str(tmp_path/'www')), 10, 'the servers started by the stand-in to stop')


def test_pool_serve_chat_template_in_commands_and_lm_eval_args(tmp_path):
    "chat_template false: both servers render chats plainly; true: lm-eval applies the template, through vllm serve's token ids only."
    from mixexperts.backends import PLAIN_CHAT_TEMPLATE
    from mixexperts.commands.pool_serve import _lm_eval_line
    (tmp_path/'pool.yaml').write_text('- {model: org/a, chat_template: false}\n- {model: org/b, chat_template: true}\n- org/c\n')
    for engine, plain in [('vllm', ['--chat-template', PLAIN_CHAT_TEMPLATE]), ('mixexperts', ['--plain-chat'])]:
        code, out, err = run_captured(['pool', 'serve', tmp_path/'pool.yaml', '-o', tmp_path/'e.json', '--engine', engine, '--gpus', '0,1,2', '--dry-run'])
        cmds = [s['command'] for s in json.loads(out)]
        assert code == 0 and cmds[0][-len(plain):] == plain and not any(x in c for c in cmds[1:] for x in plain), err
    servers = [dict(model=m, base_url=f'http://127.0.0.1:{9000 + i}/v1', engine=e, tokenizer=m, chat_template=c)
               for i, (m, e, c) in enumerate([('org/a', 'vllm', True), ('org/b', 'mixexperts', True), ('org/c', 'vllm', None)])]
    ep = tmp_path/'e.json'
    ep.write_text(json.dumps({'format': 1, 'endpoints': {s['model']: s['base_url'] for s in servers}, 'servers': servers}))
    assert lm_eval_args(ep, 'org/a')[-1] == '--apply_chat_template' and '--apply_chat_template' not in lm_eval_args(ep, 'org/c')
    with pytest.raises(Exception, match="model 'org/b' has chat_template: true, which lm-eval applies to token-id requests only"): lm_eval_args(ep, 'org/b')
    assert _lm_eval_line(ep, 'org/b').startswith("none (model 'org/b' has chat_template: true")


def test_pool_serve_session_members_skips_processes_gone_meanwhile(tmp_path):
    from mixexperts.pool_serve import session_members
    (tmp_path/'41').mkdir()                                                   # exited between listing and reading
    (tmp_path/'42').mkdir(); (tmp_path/'42'/'stat').write_text('42 (vllm serve) S 1 42 7 0 -1\n')
    (tmp_path/'43').mkdir(); (tmp_path/'43'/'stat').write_text('43 (a) b) S 42 43 7 0 -1\n')   # a ')' in the command name
    (tmp_path/'44').mkdir(); (tmp_path/'44'/'stat').write_text('44 (other) S 1 44 8 0 -1\n')
    assert sorted(session_members(7, proc=tmp_path)) == [42, 43]


def test_pool_serve_routed_starts_only_the_chosen_models(tmp_path):
    "MoM's inference through `serve_routed`: the queries routed first, a server only for the model chosen, answers as in-process."
    from mixexperts.backends import HFBackend
    from mixexperts.core import MixExpertsError, data_path
    from mixexperts.pool import PoolModel
    from mixexperts.pool_serve import pool_members, serve_routed
    from mixexperts.results import load_results
    from mixexperts.routers import get_router
    pair = ['Qwen__Qwen2.5-7B-Instruct', 'google__gemma-2-9b-it']   # two real pool members, played by the shipped LMs
    rm = load_results(data_path('lm_eval', 'mmlu'), models=pair, progress=False)
    router = get_router('best_single').fit(rm)
    qs = rm.questions['text'].tolist()[:2]
    pick = router.route(qs).chosen[0]
    pool = [PoolModel('smollm2-135m-instruct', name=pair[0]), PoolModel('gemma3-270m', name=pair[1])]
    behind = {p.folder: p.model for p in pool}
    assert pool_members(pool, [pick]) == {pick: next(p for p in pool if p.folder == pick)}
    with pytest.raises(MixExpertsError, match=r"the router chose \['acme__m'\], which the pool does not list"): pool_members(pool, ['acme__m'])
    started = []
    got = serve_routed(router, qs, pool, tmp_path / 'endpoints.json', engine='mixexperts', gpus=[], timeout=300,
                       on_ready=lambda s: started.append(s.model), max_tokens=8, temperature=0.0)
    assert started == [behind[pick]]                               # the other model never got a server
    assert [a['selected_model'] for a in got] == [pick, pick] and not (tmp_path / 'endpoints.json').exists()
    local = HFBackend(behind[pick])
    for a in got: assert a['response'] == local.generate([[{'role': 'user', 'content': a['query']}]], max_tokens=8, temperature=0.0)[0][0].text
