"""The gpu profile of every paper, rehearsed on this CPU: `mixexperts reproduce all --profile gpu --rehearse`, its
executed notebooks, resume by stage, and the gpu profile's clear errors."""
import gzip, json, os, re, subprocess, sys, time
from pathlib import Path
import nbformat, pytest

from mixexperts.reproduce import PAPERS, papers_dir

EXE = str(Path(sys.executable).parent / 'mixexperts')
ENV = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1', MPLBACKEND='Agg')
BUDGET = 8 * 60   # all five rehearsed within 8 minutes on this 2-core machine


def mx(*args, timeout=1800):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)


def code_cells(nb_path):
    return [c for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == 'code']


def cell_text(cell) -> str:
    "Everything a cell showed: streams, plain text and HTML of its outputs."
    out = []
    for o in cell.get('outputs', []):
        if 'text' in o: out.append(o['text'])
        for k in ('text/plain', 'text/html'):
            if k in o.get('data', {}): out.append(o['data'][k])
    return '\n'.join(out)


@pytest.fixture(scope='module')
def rehearsed(tmp_path_factory):
    out = tmp_path_factory.mktemp('rehearsal') / 'gpu'
    t0 = time.perf_counter()
    r = mx('reproduce', 'all', '--profile', 'gpu', '--rehearse', '-o', out, '--quiet')
    return out, r, time.perf_counter() - t0


def test_every_paper_rehearsed(rehearsed):
    out, r, seconds = rehearsed
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    s = json.loads((out / 'summary.json').read_text())
    assert s['ok'] and s['profile'] == 'gpu' and s['rehearsed']
    assert [x['paper'] for x in s['records']] == list(PAPERS)
    assert all(x['status'] == 'ok' for x in s['records'])
    assert s['substitutions']['models'] == ['smollm2-135m-instruct', 'gemma3-270m']
    print(f"rehearsal of {len(PAPERS)} papers: {seconds:.0f} s (target {BUDGET} s);", {x['paper']: x['seconds'] for x in s['records']})
    assert seconds <= 2 * BUDGET, f"the rehearsal took {seconds:.0f} s, over twice its {BUDGET} s target"


def test_no_gpu_cell_skipped(rehearsed):
    "Every code cell of every gpu branch ran, and each notebook showed the substitution table first."
    out, r, _ = rehearsed
    assert r.returncode == 0
    for paper in PAPERS:
        nb = out / paper / f'{paper}.ipynb'
        cells = code_cells(nb)
        assert all(c.get('execution_count') for c in cells), f"{nb}: a cell did not run"
        shown = [cell_text(c) for c in cells]
        first = next(i for i, c in enumerate(cells) if 'GpuRun(' in c.source)
        assert 'smollm2-135m-instruct' in shown[first] and 'mixexperts serve' in shown[first], f"{nb}: no substitution table"
        assert not any(re.search(r'\bskipp', t, re.I) for t in shown), f"{nb}: a cell says it skipped work"
        head = json.loads((out / paper / 'headline.json').read_text())
        assert head['profile'] == 'gpu' and any(h.get('n') for h in head['headline']), f"{paper}: no n / interval in the headline"


def test_notebooks_never_read_the_rehearsal_flag():
    for nb in sorted(papers_dir().glob('*.ipynb')):
        for c in code_cells(nb):
            src = re.sub(r'from mixexperts\.rehearsal import [\w, ]+', '', c.source)   # importing GpuRun is how a gpu branch starts
            assert not re.search(r'rehears|MIXEXPERTS_REHEARSAL|active_substitutions|\.subs\b', src, re.I), (nb.name, c.source[:200])


def test_no_config_only_handoff(rehearsed):
    out, _, _ = rehearsed
    left = [p.name for p in out.rglob('*') if re.fullmatch(r'gpu_(lm_eval\.sh|plan\.json|\w+\.yaml)', p.name)]
    assert not left, left


def test_resume_reuses_stages(rehearsed):
    out, r, _ = rehearsed
    assert r.returncode == 0
    assert 'pool_eval' in {p.stem for p in (out / 'mom' / 'stages').glob('*.json')}
    done = sorted(p.stem for p in (out / 'bwr' / 'stages').glob('*.json'))
    assert done
    r2 = mx('reproduce', 'bwr', '--profile', 'gpu', '--rehearse', '--resume', '-o', out, '--quiet')
    assert r2.returncode == 0, r2.stderr[-3000:]
    shown = '\n'.join(cell_text(c) for c in code_cells(out / 'bwr' / 'bwr.ipynb'))
    for stage in done: assert f'stage {stage}: done in an earlier run' in shown


def test_mom_generative_task(rehearsed):
    "MoM's pool eval ran MGSM's stand-in through lm-eval's generate-and-extract path, and its exact_match reads into a matrix."
    from mixexperts.results import load_results
    out, r, _ = rehearsed
    assert r.returncode == 0
    gen = load_results(out / 'mom' / 'lm_eval' / 'mgsm', progress=False)
    assert (gen.n_models, gen.n_questions) == (2, 6) and set(gen.meta['metrics'].values()) == {'exact_match'}
    lines = []
    for p in (out / 'mom' / 'lm_eval' / 'mgsm').glob('*/samples_*.jsonl.gz'):
        with gzip.open(p, 'rt') as f: lines += [json.loads(l) for l in f]
    assert len(lines) == 12 and all(x['filter'] == 'last-number' and x['resps'][0][0].strip() for x in lines)
    assert sorted(gen.correct.ravel().tolist()) == sorted(float(x['exact_match']) for x in lines)


def test_mom_serves_only_routed_models(rehearsed):
    "MoM's routed inference started a server for each model the orchestrator routed to, and for no other."
    out, r, _ = rehearsed
    assert r.returncode == 0
    served = json.loads((out / 'mom' / 'stages' / 'routed_inference.json').read_text())['result']
    logs = sorted(p.name.split('_', 1)[1][:-len('.log')] for p in (out / 'mom' / 'endpoints.logs').glob('*.log'))
    assert logs and logs == sorted(served['models']), (logs, served['models'])


def test_unknown_model_names_the_parameter(tmp_path):
    r = mx('reproduce', 'mom', '--profile', 'gpu', '--rehearse', '-o', tmp_path / 'x', '--param', 'pool=["acme/NotAModel-7B"]', '--quiet')
    assert r.returncode == 2 and "pool: unknown ['acme/NotAModel-7B']" in r.stdout + r.stderr


def test_vllm_without_gpu_is_a_clear_error(tmp_path):
    r = mx('reproduce', 'mom', '--profile', 'gpu', '-o', tmp_path / 'x', '--param', 'pool=2', '--param', 'benchmarks=["mmlu"]', '--quiet')
    assert r.returncode == 2 and "engine 'vllm' needs a CUDA GPU" in r.stdout + r.stderr


def test_rehearse_needs_gpu_profile(tmp_path):
    r = mx('reproduce', 'mom', '--profile', 'smoke', '--rehearse', '-o', tmp_path / 'x')
    assert r.returncode == 2 and '--rehearse rehearses the gpu profile' in r.stderr
