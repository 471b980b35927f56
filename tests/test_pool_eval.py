"""Rehearsal of `mixexperts pool eval` on CPU: real lm-eval runs of the two shipped LMs over two local tasks made from
the shipped ARC and CommonsenseQA questions, with local workers on pretend GPUs and on a local Ray cluster with
pretend GPUs; both outputs read by `results summary`, compared file by file, and routed by `route eval`.

One session fixture runs the two rehearsals (4 jobs each); every other test reads them or runs cheap commands.
Thread counts are pinned (`--threads 1`), so local and Ray runs score identically; log-likelihoods are compared
within LL_TOL all the same, since the two runs are separate processes on a machine shared with other work.
"""
import gzip, json, os, re, shutil, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest

from mixexperts.cli import run_captured
from mixexperts.pool import rehearsal_tasks, lm_eval_command, make_jobs, parse_tasks, read_pool
from mixexperts.results import load_results

EXE = str(Path(sys.executable).parent / 'mixexperts')
N = 4            # questions per task
LL_TOL = 1e-4    # log-likelihoods of the same model on the same question, local vs Ray
POOL = "- {model: smollm2-135m-instruct, dtype: float32}\n- {model: gemma3-270m, dtype: float32}\n"

def env():
    "The environment at call time (a Ray cluster started by a test adds its auth settings to it)."
    return {**os.environ, 'MIXEXPERTS_PROGRESS': 'text', 'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1'}

BENCHES = ('pool_arc', 'pool_csqa')
MODELS = ('gemma3-270m', 'smollm2-135m-instruct')


def pool_eval(*args, timeout=900):
    return subprocess.run([EXE, 'pool', 'eval', *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env())


@pytest.fixture(scope='session')
def pool_dir(tmp_path_factory):
    "The pool file and the two rehearsal tasks."
    d = tmp_path_factory.mktemp('pool')
    tasks = rehearsal_tasks(d / 'tasks', n=N)
    (d / 'pool.yaml').write_text(POOL)
    d.joinpath('task_args.json').write_text(json.dumps(['--tasks', f"{tasks['pool_arc']},{tasks['pool_csqa']}", '--threads', '1']))
    return d


def task_args(d): return json.loads((d / 'task_args.json').read_text())


@pytest.fixture(scope='session')
def pool_local(pool_dir):
    "The shared local rehearsal: 2 models x 2 tasks with 2 local workers on pretend GPUs 0,1."
    d = pool_dir
    t0 = time.time()
    local = pool_eval(d / 'pool.yaml', *task_args(d), '-o', d / 'local', '--gpus', '0,1', '--workers', '2')
    return dict(dir=d, local=local, local_seconds=time.time() - t0)


def start_ray():
    "A local Ray cluster with two pretend GPUs (once more if its start-up times out on a busy machine)."
    import ray
    for attempt in range(2):
        try: return ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, logging_level='ERROR', log_to_driver=False)
        except Exception:
            ray.shutdown()
            if attempt: raise


def busy_ray_workers():
    "PIDs of the Ray workers running a pool job now (Ray titles a busy worker `ray::_ray_job`)."
    import psutil
    pids = []
    for p in psutil.process_iter(['cmdline']):
        try:
            if ' '.join(p.info['cmdline'] or []).startswith('ray::_ray_job'): pids.append(p.pid)
        except psutil.Error: pass
    return pids


def run_killing_ray_workers(d, address):
    "pool eval of one job on the Ray cluster at `address`, its worker SIGKILLed as soon as it runs, twice: what happened."
    (d / 'crash').mkdir()
    (d / 'crash' / 'pool.yaml').write_text("- {model: smollm2-135m-instruct, dtype: float32}\n")
    arc = task_args(d)[1].split(',')[0]
    p = subprocess.Popen([EXE, 'pool', 'eval', str(d / 'crash' / 'pool.yaml'), '--tasks', arc, '--threads', '1', '-o', str(d / 'crash' / 'o'),
                          '--ray', address], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    killed, deadline = [], time.time() + 300
    while len(killed) < 2 and p.poll() is None and time.time() < deadline:
        for pid in busy_ray_workers():
            if pid not in killed and len(killed) < 2:
                os.kill(pid, signal.SIGKILL); killed.append(pid)
        time.sleep(0.1)
    stdout, stderr = p.communicate(timeout=300)
    return dict(pids=killed, returncode=p.returncode, stdout=stdout, stderr=stderr, out=d / 'crash' / 'o')


@pytest.fixture(scope='session')
def pool_runs(pool_local):
    "The shared Ray rehearsal of the same jobs on a local cluster started here (num_cpus=2, num_gpus=2), with the local one."
    import ray
    d = pool_local['dir']
    t0 = time.time()
    ctx = start_ray()
    try:
        address = ctx.address_info['gcs_address']
        on_ray = pool_eval(d / 'pool.yaml', *task_args(d), '-o', d / 'ray', '--ray', address)
        seconds = time.time() - t0
        killed = run_killing_ray_workers(d, address)   # on the same cluster: one Ray start-up fewer
    finally: ray.shutdown()
    return dict(pool_local, ray=on_ray, address=address, ray_seconds=seconds, killed=killed)


def records(out):
    return {r['job']: r for r in json.loads((Path(out) / 'logs' / 'pool_eval.json').read_text())}


def check_run(r, out, gpus_from):
    assert r.returncode == 0, r.stderr[-3000:]
    recs = records(out)
    assert sorted(recs) == sorted(f'{b}__{m}' for b in BENCHES for m in MODELS)
    assert all(x['status'] == 'done' for x in recs.values())
    table = r.stdout.splitlines()
    assert table[0].split()[:4] == ['benchmark', 'model', 'status', 'GPUs'] and sum(' done ' in l for l in table) == 4
    for b in BENCHES:
        for m in MODELS:
            files = sorted(p.name for p in (out / b / m).iterdir())
            assert len(files) == 2 and files[0].startswith('results_') and re.match(rf'samples_{b}_.+\.jsonl\.gz$', files[1]), files
    for x in recs.values():   # each job saw one of the two (pretend) GPUs, and said so in its log
        assert x['cuda_visible_devices'] in gpus_from
        assert f"CUDA_VISIBLE_DEVICES='{x['cuda_visible_devices']}'" in Path(x['log']).read_text()
    return recs


def summary(folder):
    r = subprocess.run([EXE, 'results', 'summary', str(folder), '--json'], capture_output=True, text=True, timeout=300, env=env())
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_pool_eval_local_workers_on_pretend_gpus(pool_local):
    out = pool_local['dir'] / 'local'
    recs = check_run(pool_local['local'], out, {'0', '1'})
    # two workers: jobs overlapped in time, and overlapping jobs never shared a GPU
    spans = [(x['started'], x['ended'], x['cuda_visible_devices']) for x in recs.values()]
    overlapping = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if a[0] < b[1] and b[0] < a[1]]
    assert overlapping and all(a[2] != b[2] for a, b in overlapping)
    for b in BENCHES:
        s = summary(out / b)
        assert (s['n_models'], s['n_questions']) == (2, N)


def test_pool_eval_on_local_ray_cluster(pool_runs):
    out = pool_runs['dir'] / 'ray'
    recs = check_run(pool_runs['ray'], out, {'0', '1'})   # the ids Ray assigned from the cluster's num_gpus=2
    assert all(Path(x['log']).parent == out / 'logs' for x in recs.values())
    for b in BENCHES:
        s = summary(out / b)
        assert (s['n_models'], s['n_questions']) == (2, N)


def test_pool_eval_ray_worker_killed_mid_job(pool_runs):
    "A Ray worker killed mid-job (as by the OOM killer) is run again once by Ray; killed again, the job is a recorded failure with its log."
    k = pool_runs['killed']
    assert len(k['pids']) == 2, (k['pids'], k['stderr'][-2000:])   # the first run and Ray's one retry, both killed
    assert k['returncode'] == 1, k['stderr'][-2000:]
    rec = records(k['out'])['pool_arc__smollm2-135m-instruct']
    assert rec['status'] == 'failed' and rec['error'].startswith('its Ray worker died 2 time(s)'), rec
    assert 'died unexpectedly' in Path(rec['log']).read_text()       # Ray's own words, kept in the job's log
    assert 'failed' in k['stdout'] and rec['log'] in k['stdout']
    assert not (k['out'] / 'pool_arc' / 'smollm2-135m-instruct').exists()   # nothing half-written placed


def test_pool_ray_and_local_give_the_same_files(pool_runs):
    d = pool_runs['dir']
    assert pool_runs['local'].returncode == 0 and pool_runs['ray'].returncode == 0
    strip = lambda n: re.sub(r'\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d+', 'TS', n)
    names = lambda root: sorted(strip(str(p.relative_to(root))) for p in root.rglob('*') if p.is_file() and 'logs' not in p.parts and '.work' not in p.parts)
    assert names(d / 'local') == names(d / 'ray') and len(names(d / 'local')) == 8
    for b in BENCHES:
        loc, ray_ = load_results(d / 'local' / b, progress=False), load_results(d / 'ray' / b, progress=False)
        assert loc.models == ray_.models and loc.n_questions == ray_.n_questions == N
        np.testing.assert_array_equal(loc.correct, ray_.correct)                  # identical per-sample acc
        np.testing.assert_allclose(loc.logliks, ray_.logliks, atol=LL_TOL, rtol=0)


def test_pool_eval_then_results_summary_then_route_eval(pool_local):
    "pool eval (the fixture) → results summary → route eval on its output."
    out = pool_local['dir'] / 'local' / 'pool_csqa'
    s = summary(out)
    assert s['n_models'] == 2 and 0.0 <= s['best_accuracy'] <= s['oracle_accuracy'] <= 1.0
    r = subprocess.run([EXE, 'route', 'eval', str(out), '--folds', '2', '--routers', 'oracle,random,best_single', '--json'],
                       capture_output=True, text=True, timeout=300, env=env())
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert res['n_questions'] == N and abs(res['oracle_accuracy'] - s['oracle_accuracy']) < 1e-12
    assert res['routers']['oracle']['accuracy'] >= res['routers']['best_single']['accuracy']


def _lm_eval_children(marker):
    "Processes whose command line mentions `marker` (the job's work folder)."
    import psutil
    found = []
    for p in psutil.process_iter(['cmdline']):
        try:
            if any(marker in c for c in (p.info['cmdline'] or [])): found.append(p)
        except psutil.Error: pass
    return found


def test_pool_eval_sigkill_then_resume_redoes_only_unfinished(pool_local, tmp_path):
    "Kill pool eval mid-job: no lm-eval left running, no folder for the pair; the rerun redoes that pair alone."
    src = pool_local['dir'] / 'local'
    assert pool_local['local'].returncode == 0
    out = tmp_path / 'out'
    shutil.copytree(src, out, ignore=shutil.ignore_patterns('.work'))
    victim = 'pool_csqa__smollm2-135m-instruct'
    shutil.rmtree(out / 'pool_csqa' / 'smollm2-135m-instruct')                 # that pair is unfinished
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob('*') if p.is_file() and 'logs' not in p.parts}
    d = pool_local['dir']
    p = subprocess.Popen([EXE, 'pool', 'eval', str(d / 'pool.yaml'), *task_args(d), '-o', str(out), '--gpus', '0,1', '--resume'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    work = out / '.work' / victim
    deadline = time.time() + 240
    while time.time() < deadline and not _lm_eval_children(str(work)): time.sleep(0.5)
    assert _lm_eval_children(str(work)), 'the job never started lm-eval'
    time.sleep(3)
    p.send_signal(signal.SIGKILL); p.wait(timeout=30); p.stdout.close(); p.stderr.close()
    for _ in range(40):
        if not _lm_eval_children(str(work)): break
        time.sleep(0.25)
    assert not _lm_eval_children(str(work)), 'lm-eval outlived the killed pool eval'
    assert not (out / 'pool_csqa' / 'smollm2-135m-instruct').exists()  # nothing half-written where results are read
    (work / 'raw').mkdir(parents=True, exist_ok=True)                   # a truncated leftover the rerun must not read
    (work / 'raw' / 'samples_pool_csqa_2020-01-01T00-00-00.000000.jsonl').write_text('{"doc_id": 0, "do')
    r = pool_eval(d / 'pool.yaml', *task_args(d), '-o', out, '--gpus', '0,1', '--resume')
    assert r.returncode == 0, r.stderr[-3000:]
    recs = records(out)
    assert {k: v['status'] for k, v in recs.items()} == {k: ('done' if k == victim else 'skipped') for k in recs}
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in before}
    assert after == before                                              # finished pairs untouched
    redone, orig = load_results(out / 'pool_csqa', progress=False), load_results(src / 'pool_csqa', progress=False)
    np.testing.assert_array_equal(redone.correct, orig.correct)
    np.testing.assert_allclose(redone.logliks, orig.logliks, atol=LL_TOL, rtol=0)


# ---- bad input: one clear line, before any job starts (or a recorded failure) ----

def test_pool_eval_bad_pool_yaml(tmp_path):
    for text, msg in [("- {model: a/b, tpp: 2}", "models[0]: config key 'tpp' is not supported"),
                      ("- a/b\n- {model: a/b}", "models[1].model: 'a/b' duplicates models[0]"),
                      ("- {model: a/b, tp: 3}", "models[0].tp: 3 is larger than the 2 GPU(s) available"),
                      ("{models: [a/b], engin: vllm}", "key 'engin' is not supported")]:
        (tmp_path / 'pool.yaml').write_text(text)
        code, out, err = run_captured(['pool', 'eval', tmp_path / 'pool.yaml', '--tasks', 'mx_swarm_mmlu', '-o', tmp_path / 'out', '--gpus', '0,1'])
        assert code == 2 and msg in err and str(tmp_path / 'pool.yaml') in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / 'out').exists()


def test_pool_file_and_task_errors_name_the_field(tmp_path):
    "Every check of a pool entry and of a task file, by `read_pool` / `parse_tasks` / `lm_eval_command` (no CLI)."
    from mixexperts.core import MixExpertsError
    pool = tmp_path / 'pool.yaml'
    for text, msg in [("- {model: a/b, params: -1}", "models[0].params: params must be a positive number of billions, got -1"),
                      ("- {model: a/b, name: ../x}", "models[0].name: name must be a folder name"),
                      ("- {model: a/b, chat_template: maybe}", "models[0].chat_template: chat_template must be true or false, got 'maybe'"),
                      ("{models: [a/b], gpu_memory_utilization: 2}", "gpu_memory_utilization must be in (0, 1], got 2")]:
        pool.write_text(text)
        with pytest.raises(MixExpertsError, match=re.escape(msg)) as e: read_pool(pool)
        assert str(pool) in str(e.value)
    with pytest.raises(MixExpertsError, match='not valid YAML'): read_pool("- [unclosed")          # YAML text, not a file
    (tmp_path / 'mine').mkdir()
    pool.write_text("- ./mine\n- {model: a/b, chat_template: true}\n")                             # a folder beside the pool file
    local, chat = read_pool(pool).models
    assert local.model == str((tmp_path / 'mine').resolve()) and read_pool([x for x in ('a/b',)]).models[0].chat_template is None
    (tmp_path / 'bad.yaml').write_text("task: [unclosed")
    with pytest.raises(MixExpertsError, match=r'not valid YAML') as e: parse_tasks([str(tmp_path / 'bad.yaml')])
    assert str(tmp_path / 'bad.yaml') in str(e.value)
    job, = make_jobs(read_pool([{'model': chat.model, 'chat_template': chat.chat_template}]), parse_tasks('arc_challenge'))
    with pytest.raises(MixExpertsError, match="engine must be one of hf, vllm, got 'sglang'"): lm_eval_command(job, '/m', Path('/o'), 'sglang')
    assert '--apply_chat_template' in lm_eval_command(job, '/m', Path('/o'))
    code, out, err = run_captured(['pool', 'eval', pool, '--tasks', 'arc_challenge', '-o', tmp_path / 'o', '--limit', '0'])
    assert code == 2 and "--limit must be positive, got '0'" in err


def test_pool_children_die_with_their_parent():
    "The parent-death signal that pool eval's lm-eval jobs (SIGKILL) and pool serve's servers (SIGTERM) get before exec, read back in a child."
    code = ("import ctypes, signal\nfrom mixexperts import pool, pool_serve\nlibc = ctypes.CDLL(None)\nv = ctypes.c_int()\n"
            "for sig in (pool.JOB_DEATH_SIGNAL, pool_serve.SERVER_DEATH_SIGNAL):\n"
            "    pool.die_with_parent(sig)(); libc.prctl(2, ctypes.byref(v)); print(signal.Signals(v.value).name)\n")   # 2: PR_GET_PDEATHSIG
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60, env=env())
    assert r.returncode == 0 and r.stdout.split() == ['SIGKILL', 'SIGTERM'], r.stderr


def test_pool_eval_unknown_task_and_existing_output(tmp_path, pool_dir):
    code, out, err = run_captured(['pool', 'eval', pool_dir / 'pool.yaml', '--tasks', 'pool_no_such_task', '-o', tmp_path / 'o'])
    assert code == 2 and "unknown lm-eval task(s) ['pool_no_such_task']" in err, err
    (tmp_path / 'o').mkdir(); (tmp_path / 'o' / 'other').mkdir()
    code, out, err = run_captured(['pool', 'eval', pool_dir / 'pool.yaml', *task_args(pool_dir), '-o', tmp_path / 'o'])
    assert code == 2 and 'already holds results (other); pass --resume to skip the finished pairs or --force' in err, err


def test_pool_eval_ray_address_that_does_not_answer(tmp_path, pool_dir):
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]   # a port nobody listens on once closed
    t0 = time.time()
    code, out, err = run_captured(['pool', 'eval', pool_dir / 'pool.yaml', *task_args(pool_dir), '-o', tmp_path / 'o', '--ray', f'127.0.0.1:{port}'])
    assert code == 2 and f"the Ray cluster at '127.0.0.1:{port}' does not answer" in err, err
    assert time.time() - t0 < 30 and not (tmp_path / 'o').exists()


def test_pool_eval_ray_auto_with_a_bad_ray_address(tmp_path, pool_dir, monkeypatch):
    "`--ray auto` follows RAY_ADDRESS; one that names no cluster is one clear error, before any job."
    monkeypatch.setenv('RAY_ADDRESS', 'not-an-address')
    code, out, err = run_captured(['pool', 'eval', pool_dir / 'pool.yaml', *task_args(pool_dir), '-o', tmp_path / 'o', '--ray', 'auto'])
    assert code == 2 and "cannot join the Ray cluster at 'auto'" in err and 'not-an-address' in err, err
    assert not (tmp_path / 'o').exists()


def test_pool_eval_unknown_model_is_retried_then_recorded(tmp_path, pool_dir):
    "A model that cannot be resolved offline fails twice (one retry), is recorded with its log, and the exit status is 1."
    (tmp_path / 'pool.yaml').write_text("- no-such-org/no-such-model-7b\n")
    arc = json.loads((pool_dir / 'task_args.json').read_text())[1].split(',')[0]
    r = pool_eval(tmp_path / 'pool.yaml', '--tasks', arc, '-o', tmp_path / 'o', '--limit', '2')
    assert r.returncode == 1, r.stderr[-2000:]
    rec = records(tmp_path / 'o')['pool_arc__no-such-org__no-such-model-7b']
    assert rec['status'] == 'failed' and len(rec['attempts']) == 2 and "unknown model 'no-such-org/no-such-model-7b'" in rec['error']
    assert Path(rec['log']).exists() and 'attempt 2 failed' in Path(rec['log']).read_text()
    assert 'failed' in r.stdout and rec['log'] in r.stdout and 'pool_arc__no-such-org__no-such-model-7b' in r.stderr
    assert not (tmp_path / 'o' / 'pool_arc' / 'no-such-org__no-such-model-7b').exists()


def test_pool_vllm_and_hf_command_lines():
    "lm-eval's vllm model arguments (tp, GPU memory share, max_model_len, dtype) and the hf ones, as the jobs run them."
    pool = read_pool("engine: vllm\ngpu_memory_utilization: 0.8\nmodels:\n  - {model: google/gemma-2-9b-it, tp: 2, dtype: bfloat16, max_length: 4096}\n"
                     "  - {model: Qwen/Qwen3-4B, chat_template: true}\n", n_gpus=2)
    big, small = make_jobs(pool, parse_tasks('mmlu'))
    cmd = lm_eval_command(big, '/m/gemma', Path('/o'), 'vllm', 'cuda', gpu_memory_utilization=pool.gpu_memory_utilization)
    margs = dict(kv.split('=') for kv in cmd[cmd.index('--model_args') + 1].split(','))
    assert cmd[cmd.index('--model') + 1] == 'vllm' and '--device' not in cmd
    assert margs == dict(pretrained='/m/gemma', tensor_parallel_size='2', gpu_memory_utilization='0.8', dtype='bfloat16', max_model_len='4096')
    hf = lm_eval_command(small, '/m/qwen', Path('/o'), 'hf', 'cuda')
    assert hf[hf.index('--model_args') + 1] == 'pretrained=/m/qwen,dtype=auto' and '--apply_chat_template' in hf
    assert hf[hf.index('--device') + 1] == 'cuda' and hf[hf.index('--batch_size') + 1] == 'auto'
    par = lm_eval_command(big, '/m/gemma', Path('/o'), 'hf', 'cuda')
    assert 'parallelize=True' in par[par.index('--model_args') + 1]


def test_pool_output_resume_skips_finished_and_force_redoes(tmp_path):
    "Which pairs a rerun does: --resume the unfinished ones (a leftover in .work does not count), --force all of them."
    from mixexperts.core import OutputExistsError
    from mixexperts.pool import prepare_output, check_output
    pool = read_pool("- a/m-1b\n- b/m-2b\n")
    jobs = make_jobs(pool, parse_tasks('arc_challenge'))
    out = tmp_path / 'out'
    assert prepare_output(out, jobs) == jobs
    (out / 'arc_challenge' / 'a__m-1b').mkdir(parents=True)
    (out / '.work' / 'arc_challenge__b__m-2b' / 'raw').mkdir(parents=True)
    with pytest.raises(OutputExistsError, match='pass --resume'): check_output(out)
    assert [j.model.folder for j in prepare_output(out, jobs, resume=True)] == ['b__m-2b']
    assert prepare_output(out, jobs, force=True) == jobs and not (out / 'arc_challenge' / 'a__m-1b').exists()


def test_pool_schedule_places_tp_jobs_on_free_gpus_within_the_bound():
    "Longest-first list scheduling: a tp=2 job holds two GPUs at once, no GPU runs two jobs at a time, bound <= makespan <= naive."
    from mixexperts.pool import list_schedule, lower_bound
    pool = read_pool("- {model: google/gemma-2-9b-it, tp: 2}\n- Qwen/Qwen2.5-7B-Instruct\n- meta-llama/Llama-3.2-1B-Instruct\n- {model: x/y, params: 3}\n", n_gpus=4)
    jobs = make_jobs(pool, parse_tasks(['mmlu,arc_challenge', 'med=medmcqa+commonsense_qa']))
    assert [j.task.tasks for j in jobs[:3]] == [('mmlu',), ('arc_challenge',), ('medmcqa', 'commonsense_qa')]
    for g in (2, 3, 4):
        s = list_schedule(jobs, g)
        assert sorted(x.job.key for x in s.slots) == sorted(j.key for j in jobs)
        for x in s.slots:
            assert len(x.gpus) == x.job.model.tp and x.end - x.start == pytest.approx(x.job.work / x.job.model.tp)
        for a in s.slots:
            for b in s.slots:
                if a is not b and set(a.gpus) & set(b.gpus): assert a.end <= b.start or b.end <= a.start
        assert lower_bound(jobs, g) <= s.makespan <= list_schedule(jobs, g, order='given').makespan + 1e-9
    cpu = list_schedule(jobs, 0, workers=2)
    assert all(x.gpus == () for x in cpu.slots) and cpu.makespan >= sum(j.work for j in jobs) / 2
    code, out, err = run_captured(['pool', 'eval', 'p.yaml', '--tasks', 'mmlu', '-o', 'o', '--limit', 'ten'])
    assert code == 2 and "--limit must be a number, got 'ten'" in err


def test_pool_eval_raise_on_failure_names_the_failed_jobs():
    "`pool_eval(raise_on_failure=True)` ends with `check_records`: the failed jobs, their errors and logs, and the table."
    from mixexperts.pool import PoolEvalError, check_records, failures
    recs = [dict(job='arc__a', benchmark='arc', folder='a', status='ok', seconds=1.0),
            dict(job='arc__b', benchmark='arc', folder='b', status='failed', error='CUDA out of memory', log='logs/arc__b.log', seconds=2.0)]
    check_records(recs[:1])
    with pytest.raises(PoolEvalError, match=r'1 of 2 job\(s\) failed: arc__b \(CUDA out of memory; log logs/arc__b.log\)') as e:
        check_records(recs)
    assert 'benchmark' in str(e.value) and failures(recs) in str(e.value)
