"""Population search (mixexperts.search): kill-and-resume bit for bit, workers, refused inputs, the CLI."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
import yaml

os.environ.setdefault('HF_HUB_OFFLINE', '1')
torch = pytest.importorskip('torch')
from mixexperts.core import MixExpertsError, OutputExistsError, read_json
from mixexperts.params import LoraAdapter
from mixexperts.experts import QUICK_EXPERTS
from mixexperts.search import run_search, load_experts, _cut_rank, UPDATE_RULES

EXE = str(Path(sys.executable).parent / 'mixexperts')
DOMAINS = ['mmlu', 'medmcqa', 'medqa']
EXPERTS = [f'expert-lora:{d}' for d in DOMAINS]

DIST_CFG = dict(experts=EXPERTS[1:], expert_settings=QUICK_EXPERTS, particles=6, max_iterations=5, seed=0,
                utility=dict(name='distance', target='expert-lora:mmlu', expert_settings=QUICK_EXPERTS))


def mx(*args, timeout=600):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, 'HF_HUB_OFFLINE': '1'})


def outputs(run):
    run = Path(run)
    m = read_json(run / 'metrics.json')
    return m, read_json(run / 'utility_scratchpad.json'), LoraAdapter.load(run / 'global_best').factors.flat()


@pytest.fixture(scope='module')
def experts():
    return load_experts(EXPERTS, QUICK_EXPERTS)


# The kill-and-resume test uses the model-free `distance` utility (computed from the real adapter tensors): scoring
# with the model on a CPU (seconds per multiple-choice question) would take many minutes per run.
# That the model utility itself is deterministic is checked by test_mc_utility_is_repeatable.
@pytest.mark.parametrize('rule', ['swarm', 'bwr'])
def test_sigkill_and_resume_is_bit_for_bit(tmp_path, experts, rule):
    config = dict(DIST_CFG, max_iterations=8, patience=100)
    cfg = tmp_path / 'run.yaml'
    cfg.write_text(yaml.safe_dump(config))
    # the uninterrupted run is a process of its own too: float reductions depend on torch's thread count, which
    # this pytest process may have changed (another test module sets it to 1); bit for bit holds at equal counts
    whole = mx('search', rule, '--config', cfg, '-o', tmp_path / 'whole', '--quiet')
    assert whole.returncode == 0, whole.stderr
    run = tmp_path / 'killed'
    p = subprocess.Popen([EXE, 'search', rule, '--config', str(cfg), '-o', str(run), '--quiet'],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    latest, t0 = run / 'checkpoint' / 'latest.json', time.time()
    while time.time() - t0 < 300:
        if latest.exists() and read_json(latest)['iteration'] >= 1: break
        assert p.poll() is None, p.stderr.read()
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (run / 'metrics.json').exists(), 'the run finished before it could be killed'
    r = mx('search', rule, '--config', cfg, '-o', run, '--resume', '--json')
    assert r.returncode == 0, r.stderr
    got_m, got_sp, got_best = outputs(run)
    want_m, want_sp, want_best = outputs(tmp_path / 'whole')
    assert got_sp == want_sp
    assert got_m == want_m == json.loads(r.stdout.strip().splitlines()[-1])
    assert torch.equal(got_best, want_best)
    assert read_json(run / 'checkpoint' / 'latest.json')['iteration'] == want_m['iterations']


def test_workers_give_the_same_run(tmp_path):
    a = run_search(DIST_CFG, tmp_path / 'one', 'swarm', workers=1)
    b = run_search(DIST_CFG, tmp_path / 'two', 'swarm', workers=2)
    assert a == b
    assert read_json(tmp_path / 'one' / 'utility_scratchpad.json') == read_json(tmp_path / 'two' / 'utility_scratchpad.json')


def test_another_seed_gives_another_run(tmp_path):
    "The counterpart of the bit-for-bit tests: the seed is what makes runs equal, so another seed moves other particles."
    for rule in ('swarm', 'bwr'):
        a = run_search(DIST_CFG, tmp_path / f'{rule}-0', rule)
        b = run_search({**DIST_CFG, 'seed': 1}, tmp_path / f'{rule}-1', rule)
        sa, sb = (read_json(tmp_path / f'{rule}-{s}' / 'utility_scratchpad.json') for s in (0, 1))
        assert sa['particle_0_history'][0] == sb['particle_0_history'][0]   # the same starting expert...
        assert sa != sb and a['personal_best_dev'] != b['personal_best_dev']   # ...but other children, draws and moves


def test_random_search_same_budget(tmp_path):
    m = {r: run_search(DIST_CFG, tmp_path / r, r) for r in ('swarm', 'random')}
    n = DIST_CFG['particles']
    for r, v in m.items():
        assert v['iterations'] <= DIST_CFG['max_iterations']
        assert v['dev_evaluations'] <= n * (v['iterations'] + 1)
        assert v['ending_best_validation_utility'] >= v['starting_best_validation_utility']


def test_experts_with_other_rank_or_base_are_refused(tmp_path, experts):
    ads = experts[0]
    _cut_rank(ads[1], 2).save(tmp_path / 'rank2')
    with pytest.raises(MixExpertsError, match='experts differ in r'): load_experts([ads[0].path, tmp_path / 'rank2'])
    LoraAdapter(dict(ads[1].config, base_model_name_or_path='other/base'), ads[1].factors).save(tmp_path / 'other')
    with pytest.raises(MixExpertsError, match='different base models'): load_experts([ads[0].path, tmp_path / 'other'])


@pytest.mark.parametrize('change, msg', [
    (dict(rule='anneal'), "unknown update rule 'anneal'"),
    (dict(utility=dict(name='bleu')), "unknown utility 'bleu'"),
    (dict(utility=dict(name='mc_accuracy', dataset='mmlu', dev=[0, 0])), 'dev split is empty'),
    (dict(params=dict(inertia_weight=0.2)), "no parameter 'inertia_weight'"),
    (dict(experts=[]), 'no experts'),
])
def test_bad_configs(tmp_path, change, msg):
    cfg = {**DIST_CFG, **change}
    with pytest.raises(MixExpertsError, match=msg): run_search(cfg, tmp_path / 'run')
    assert not (tmp_path / 'run').exists()


def test_cli_refuses_existing_folder_and_corrupt_checkpoint(tmp_path):
    cfg = tmp_path / 'dist.yaml'
    cfg.write_text(yaml.safe_dump(DIST_CFG))
    r = mx('search', 'random', '--config', cfg, '-o', tmp_path / 'run', '--json', '--quiet')
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    r = mx('search', 'random', '--config', cfg, '-o', tmp_path / 'run')
    assert r.returncode == 2 and 'already exists; pass --resume' in r.stderr
    r = mx('search', 'swarm', '--config', cfg, '-o', tmp_path / 'run', '--resume')
    assert r.returncode == 2 and "'rule' differs" in r.stderr
    latest = read_json(tmp_path / 'run' / 'checkpoint' / 'latest.json')
    state = tmp_path / 'run' / 'checkpoint' / latest['folder'] / 'state.safetensors'
    state.write_bytes(state.read_bytes()[:100])
    before = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in (tmp_path / 'run').rglob('*'))
    r = mx('search', 'random', '--config', cfg, '-o', tmp_path / 'run', '--resume')
    assert r.returncode == 2 and f"{latest['folder']}/state.safetensors: checkpoint file is corrupt" in r.stderr
    assert sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in (tmp_path / 'run').rglob('*')) == before
    assert latest['previous'] is not None and (tmp_path / 'run' / 'checkpoint' / latest['previous'] / 'state.json').exists()
    assert first['rule'] == 'random'


def test_registry_names():
    assert {'swarm', 'bwr', 'random'} <= set(UPDATE_RULES)


def test_mc_utility_is_repeatable(experts):
    "Multiple-choice accuracy of candidates in the LoRA slot: same scores and predictions when evaluated again."
    from mixexperts.search import Evaluator
    ads, _, E = experts
    spec = dict(name='mc_accuracy', dataset='mmlu', dev=[0, 2], test=[0, 2])
    a = Evaluator(ads[0], spec)
    x = 0.5 * E[0] + 0.5 * E[1]
    first = a([x, E[0]], 'dev'); a.slot.load(E[2])
    again = a._score_all('dev', [x, E[0]])
    assert first == [s for s, _ in again] and a.preds(x, 'dev') == again[0][1]
