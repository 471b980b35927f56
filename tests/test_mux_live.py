"""Live SLM-MUX: bad input, counted misses, refusal of a different config, and crash-and-resume with a real model."""
import dataclasses, json, os, signal, subprocess, sys, time, warnings
from pathlib import Path
import numpy as np
import pytest
import yaml

from mixexperts.backends import Backend, Completion
from mixexperts.core import DataFormatError, MixExpertsError, OutputExistsError, write_json
from mixexperts.mux_sim import MuxSimulation, SampleSet
from mixexperts.tasks import Item, get_benchmark, select_questions
from mixexperts.mux_live import (MuxRun, MuxRunConfig, load_backend, load_collected, parse_models, load_mux_config,
                                 records_to_sampleset, generate_in_turn, read_run, record_table, records_simulation)

SMOL = 'smollm2-135m-instruct'
TINY = dict(benchmark='gsm8k', models=[SMOL], n_questions=3, k=2, max_tokens=6, temperature=0.7, tie_breaker='model_order',
            batch_questions=2, sample='first', threads=1)


@pytest.fixture(scope='module')
def smol():
    import torch
    torch.set_num_threads(1)
    return load_backend(parse_models([SMOL])[0])


@pytest.fixture(scope='module')
def done(smol, tmp_path_factory):
    "A finished tiny run: 3 GSM8K questions in batches of 2, SmolLM2, k=2, 6 tokens per sample."
    out = tmp_path_factory.mktemp('done')
    run = MuxRun(MuxRunConfig.from_dict(TINY), out, backends={SMOL: smol})
    return out, run.run(), run.n_generate_calls


def copy_of(done, tmp_path):
    import shutil
    return Path(shutil.copytree(done[0], tmp_path / 'run'))


def records(folder):
    return [json.loads(l) for l in (Path(folder) / 'questions.jsonl').read_text().splitlines()]


# --- config ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('change, msg', [
    (dict(models=[SMOL, SMOL]), 'duplicate model names'),
    (dict(models=[SMOL, {'name': SMOL, 'model': 'gemma3-270m'}]), 'duplicate model names'),
    (dict(models=[]), 'at least one model'),
    (dict(tie_breaker='validation_accuracy'), 'have zero validation questions'),
    (dict(tie_breaker='subject_accuracy'), 'not available live'),
    (dict(k=0), 'k must be an int >= 1'),
    (dict(n_questions=0), 'n_questions must be an int >= 1'),
    (dict(temperature=-1.0), 'temperature must be >= 0'),
    (dict(confidence='logprob'), 'log-probabilities'),
    (dict(confidence='psychic'), 'unknown confidence method'),
    (dict(benchmark='humaneval'), 'unknown benchmark'),
    (dict(models=[{'name': 'x', 'engine': 'sglang'}]), 'engine must be one of'),
    (dict(models=[{'name': 'x', 'style': 'poem'}]), 'style must be one of'),
])
def test_bad_configs_are_refused(change, msg):
    with pytest.raises(MixExpertsError, match=msg): MuxRunConfig.from_dict({**TINY, **change})


def test_validation_accuracy_given_by_hand_or_measured():
    given = [{'name': 'a', 'validation_accuracy': 0.4}, {'name': 'b', 'validation_accuracy': 0.6}]
    cfg = MuxRunConfig.from_dict({**TINY, 'models': given, 'tie_breaker': 'validation_accuracy'})
    assert MuxRun(cfg, '/nonexistent').validation_accuracy([]) == {'a': 0.4, 'b': 0.6}
    with pytest.raises(MixExpertsError, match='give it for all or none'):
        MuxRunConfig.from_dict({**TINY, 'models': [given[0], 'b']})
    measured = MuxRun(MuxRunConfig.from_dict({**TINY, 'n_validation': 1, 'tie_breaker': 'validation_accuracy'}), '/nonexistent')
    with pytest.raises(MixExpertsError, match='zero validation questions'): measured.validation_accuracy([{'split': 'test'}])


def test_config_file_errors_name_the_file(tmp_path):
    (tmp_path / 'bad.yaml').write_text('benchmark: mmlu\nmodels: [a]\nsamples_per_model: 3\n')
    with pytest.raises(DataFormatError, match=r"bad.yaml: config key 'samples_per_model' is not supported"): load_mux_config(tmp_path / 'bad.yaml')
    (tmp_path / 'worse.yaml').write_text('benchmark: [unclosed\n')
    with pytest.raises(DataFormatError, match='worse.yaml: not valid YAML'): load_mux_config(tmp_path / 'worse.yaml')
    (tmp_path / 'list.yaml').write_text('- benchmark: mmlu\n')
    with pytest.raises(DataFormatError, match='list.yaml: a run config is a mapping'): load_mux_config(tmp_path / 'list.yaml')
    import mixexperts.mux_live as ml, mixexperts.core as core
    assert not hasattr(ml, 'read_config') or ml.read_config is core.read_config   # one config reader


def test_too_many_questions():
    with pytest.raises(MixExpertsError, match='the dataset has 10'): select_questions(10, 8, 3)


# --- answers with nothing to extract are counted misses --------------------------------------------------------

def test_empty_whitespace_and_unextractable_answers_are_misses(tmp_path):
    cfg = MuxRunConfig.from_dict({**TINY, 'benchmark': 'gsm8k', 'models': [SMOL, 'other'], 'k': 3})
    run = MuxRun(cfg, tmp_path)
    item = Item('gsm8k:0', 0, 'How many?', '18')
    comp = lambda texts: dict(prompt='p', style='chat', completions=[Completion(t, 5, 1) for t in texts],
                              extracted=[get_benchmark('gsm8k').extract(item, t, 'chat') for t in texts])
    rec = run._record(item, 'test', {SMOL: comp(['', '   ', 'I do not know.']), 'other': comp(['#### 18', '\n', 'no idea'])}, None)
    assert rec['calls'][SMOL]['extracted'] == [None, None, None]
    assert rec['model_scores'] == {SMOL: 0.0, 'other': pytest.approx(1 / 3)}  # denominator k: one answer of three
    assert (rec['selected_model'], rec['final_answer'], rec['is_correct'], rec['all_agree']) == ('other', '18', True, False)
    none = run._record(item, 'test', {SMOL: comp(['', ' ', '']), 'other': comp(['?', '', 'hmm'])}, None)
    assert (none['final_answer'], none['is_correct'], none['all_agree']) == (None, False, False)


def test_tie_vote_live_records(tmp_path):
    # validation questions are decided before any priority exists; test questions then use the vote
    cfg = MuxRunConfig.from_dict({**TINY, 'models': ['a', 'b', 'c'], 'tie_breaker': 'validation_accuracy', 'n_validation': 2,
                                  'tie_vote': 8})
    run = MuxRun(cfg, tmp_path)
    item = Item('gsm8k:0', 0, 'How many?', '18')
    comp = lambda texts: dict(prompt='p', style='chat', completions=[Completion(t, 5, 1) for t in texts],
                              extracted=[get_benchmark('gsm8k').extract(item, t, 'chat') for t in texts])
    calls = {'a': comp(['#### 17'] * 2), 'b': comp(['#### 18'] * 2), 'c': comp(['#### 18'] * 2)}  # all unanimous
    val = run._record(item, 'validation', calls, None)
    assert val['model_answers'] == {'a': '17', 'b': '18', 'c': '18'}
    acc = np.array([0.80, 0.78, 0.76])  # a is best, but b and c agree and are nearly as good
    assert run._record(item, 'test', calls, acc)['final_answer'] == '18'
    plain = MuxRun(dataclasses.replace(cfg, tie_vote=None), tmp_path / 'plain')
    assert plain._record(item, 'test', calls, acc)['final_answer'] == '17'


def test_unextractable_real_answers_are_counted(done):
    # six tokens per answer: SmolLM2 rarely reaches a number, and each such sample is a counted miss, not an error
    out, s, n_calls = done
    recs = records(out)
    assert n_calls == 2 and [r['index'] for r in recs] == [0, 1, 2]
    share = np.mean([a is None for r in recs for a in r['calls'][SMOL]['extracted']])
    assert s['no_answer_rate'][SMOL] == pytest.approx(share) and share > 0
    for r in recs:
        none = [a is None for a in r['calls'][SMOL]['extracted']]
        if all(none): assert (r['final_answer'], r['is_correct'], r['model_scores'][SMOL]) == (None, False, 0.0)


# --- backends that return fewer samples than k -----------------------------------------------------------------

class FirstOnly(Backend):
    "A real model behind a server that ignores `n` (returns one completion per prompt)."
    def __init__(self, inner): self.inner, self.name = inner, inner.name
    def _generate(self, prompts, **kw): return [r[:1] for r in self.inner._generate(prompts, **kw)]


def test_fewer_completions_than_k_is_an_error(tmp_path, smol):
    cfg = MuxRunConfig.from_dict({**TINY, 'n_questions': 1, 'max_tokens': 2})
    with pytest.raises(MixExpertsError, match=r'returned 1 completion\(s\) for .*k=2 were asked'):
        MuxRun(cfg, tmp_path, backends={SMOL: FirstOnly(smol)}).run()


# --- a different config in the folder --------------------------------------------------------------------------

def test_other_config_refused_unless_force(done, tmp_path, smol):
    out = copy_of(done, tmp_path)
    before = (out / 'questions.jsonl').read_bytes()
    other = dataclasses.replace(MuxRunConfig.from_dict(TINY), k=3, n_questions=1)
    with pytest.raises(OutputExistsError, match=r'differs in: k, n_questions\).*--force'): MuxRun(other, out, backends={SMOL: smol}).run()
    assert (out / 'questions.jsonl').read_bytes() == before  # untouched
    s = MuxRun(other, out, backends={SMOL: smol}, force=True).run()
    assert (s['n_resumed'], s['samples_per_model'], s['total_count']) == (0, 3, 1)
    assert [len(r['calls'][SMOL]['responses']) for r in records(out)] == [3]
    # threads only changes speed: a rerun with other threads resumes
    again = MuxRun(dataclasses.replace(other, threads=None), out, backends={SMOL: smol})
    assert again.run()['n_resumed'] == 1 and again.n_generate_calls == 0


def test_stop_after_then_resume_gives_the_same_records(done, tmp_path, smol):
    cfg = MuxRunConfig.from_dict(TINY)
    assert MuxRun(cfg, tmp_path, backends={SMOL: smol}).run(stop_after=1) is None
    assert len(records(tmp_path)) == 1  # the first batch of two is half written
    rest = MuxRun(cfg, tmp_path, backends={SMOL: smol})
    s = rest.run()
    assert (s['n_resumed'], s['n_generated'], rest.n_generate_calls) == (1, 2, 2)  # the half-done batch is asked again, whole
    assert (tmp_path / 'questions.jsonl').read_bytes() == (done[0] / 'questions.jsonl').read_bytes()


def test_another_seed_samples_other_answers(tmp_path, smol):
    "The counterpart of the byte-for-byte resume: a batch's samples come from the run's seed, so another seed differs."
    texts = lambda calls: [c.text for m in calls for q in calls[m] for c in q['completions']]
    items = get_benchmark('gsm8k').load()[:2]   # TINY asks the first questions (sample: first), whatever the seed
    ask = lambda seed: texts(MuxRun(MuxRunConfig.from_dict({**TINY, 'seed': seed}), tmp_path / f's{seed}', backends={SMOL: smol})._ask(items, 'test', 0))
    first = ask(0)
    assert ask(0) == first and ask(1) != first


def test_broken_record_in_the_middle_is_an_error(done, tmp_path):
    out = copy_of(done, tmp_path)
    cfg = MuxRunConfig.from_dict(TINY)
    lines = (out / 'questions.jsonl').read_text().splitlines()
    (out / 'questions.jsonl').write_text(lines[0][:50] + '\n' + lines[1] + '\n')
    with pytest.raises(DataFormatError, match=r'questions.jsonl:1: not a valid record'): MuxRun(cfg, out).run()
    (out / 'questions.jsonl').write_text(lines[1] + '\n' + lines[1] + '\n')
    with pytest.raises(DataFormatError, match=r'questions.jsonl:2: a second record'): MuxRun(cfg, out).run()
    (out / 'questions.jsonl').write_text(lines[0].replace('"gsm8k:0"', '"gsm8k:999"') + '\n')
    with pytest.raises(DataFormatError, match='a question this config does not ask'): MuxRun(cfg, out).run()


# --- the other confidence methods in a live run ----------------------------------------------------------------

@pytest.mark.parametrize('confidence', ['embedding', 'verbalized'])
def test_live_run_with_other_confidence_methods(tmp_path, smol, confidence):
    cfg = MuxRunConfig.from_dict({**TINY, 'confidence': confidence, 'n_questions': 2, 'max_tokens': 8})
    run = MuxRun(cfg, tmp_path, backends={SMOL: smol})
    s = run.run()
    assert s['confidence_method'] == confidence
    for r in records(tmp_path):
        sc = r['model_scores'][SMOL]
        assert 0.0 <= sc <= 1.0
        if confidence == 'verbalized':
            v = r['calls'][SMOL]['verbalized']
            answered = any(a is not None for a in r['calls'][SMOL]['extracted'])
            assert sc == pytest.approx((v['confidence'] or 0.0) if answered else 0.0) and isinstance(v['reply'], str)
        else:
            assert sc * cfg.k == pytest.approx(round(sc * cfg.k))  # a cluster size over k
    assert run.n_generate_calls == (2 if confidence == 'verbalized' else 1)


# --- collected-sample files ------------------------------------------------------------------------------------

def good_file(model='m', **row):
    r = {'question': 'What is 3 + 4?', 'answer': '7',
         'samples': [{'round': 0, 'model_response': '#### 7', 'extracted_answer': '7'}, {'round': 1, 'model_response': 'It is 8.'}]}
    r.update(row)
    return {'model': model, 'responses': [r]}


@pytest.mark.parametrize('content, msg', [
    ('not json', 'not valid JSON'),
    ([1, 2], 'expected a JSON object'),
    ({'responses': []}, "field 'model' is missing"),
    ({'model': 'm'}, "field 'responses' \\(or 'results'\\) is missing"),
    ({'model': 'm', 'responses': ['x']}, r'responses\[0\] is not an object'),
    ({'model': 'm', 'responses': [{'answer': '7', 'samples': [{'extracted_answer': '7'}]}]}, r'responses\[0\]: no question field'),
    ({'model': 'm', 'responses': [{'question': 'q', 'samples': [{'extracted_answer': '7'}]}]}, r'responses\[0\]: no reference answer field'),
    (good_file(samples=[]), r'responses\[0\].samples is missing, empty'),
    (good_file(samples=[{'round': 0}]), r"responses\[0\].samples\[0\] has neither 'extracted_answer'"),
    (good_file(samples=[{'extracted_answer': ['7']}]), r'responses\[0\].samples\[0\].extracted_answer must be a string or null'),
])
def test_malformed_collected_files_name_file_and_field(tmp_path, content, msg):
    p = tmp_path / 'model.json'
    p.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(DataFormatError, match='model.json.*' + msg): load_collected(tmp_path, kind='gsm_number')


def test_collected_files_across_models(tmp_path):
    write_json(good_file('a'), tmp_path / 'a.json')
    write_json(good_file('a'), tmp_path / 'b.json')
    with pytest.raises(DataFormatError, match="b.json: model 'a' also comes from"): load_collected(tmp_path, kind='gsm_number')
    write_json(good_file('b', answer='8'), tmp_path / 'b.json', force=True)
    with pytest.raises(DataFormatError, match='disagree on the reference answer'): load_collected(tmp_path, kind='gsm_number')
    write_json(good_file('b'), tmp_path / 'b.json', force=True)
    ss = load_collected(tmp_path, kind='gsm_number', models=['b', 'a'])
    assert ss.models == ['b', 'a'] and ss.answers.tolist() == [[[0, 1], [0, 1]]] and ss.correct_table.tolist() == [[True, False]]
    with pytest.raises(MixExpertsError, match='duplicate model names'): load_collected(tmp_path, kind='gsm_number', models=['a', 'a'])
    with pytest.raises(MixExpertsError, match=r"no collected file for model\(s\) \['c'\]"): load_collected(tmp_path, kind='gsm_number', models=['c'])
    # k larger than the samples collected
    with pytest.raises(MixExpertsError, match='only 2 were collected'): MuxSimulation(ss, k=3, trials=1, tie_breaker='model_order')
    two = good_file('b'); two['responses'][0]['samples'].append({'extracted_answer': '7'})
    two['responses'].append(dict(two['responses'][0], question='What is 1 + 1?'))
    write_json(two, tmp_path / 'b.json', force=True)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        ss = load_collected(tmp_path, kind='gsm_number')
    msgs = [str(x.message) for x in w]
    assert any('1 question(s) not answered by every model' in m for m in msgs) and any('using the first 2' in m for m in msgs)
    assert ss.answers.shape == (1, 2, 2)


# --- crash and resume: a real process killed with SIGKILL ------------------------------------------------------

EXE = str(Path(sys.executable).parent / 'mixexperts')  # the console script, as a user runs it


def start(cfg_path, out):
    env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    return subprocess.Popen([EXE, 'mux', 'run', '--config', str(cfg_path), '--output', str(out), '--json'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, smol):
    cfg = {**TINY, 'n_questions': 4, 'batch_questions': 1}
    (tmp_path / 'cfg.yaml').write_text(yaml.safe_dump(cfg))
    want = MuxRun(MuxRunConfig.from_dict(cfg), tmp_path / 'whole', backends={SMOL: smol}).run()  # uninterrupted, in this process

    victim = start(tmp_path / 'cfg.yaml', tmp_path / 'cut')
    log = tmp_path / 'cut' / 'questions.jsonl'
    deadline = time.time() + 300
    while not (log.exists() and log.read_bytes().count(b'\n') >= 1):
        assert victim.poll() is None, victim.communicate()[1]
        assert time.time() < deadline
        time.sleep(0.02)
    assert victim.poll() is None  # still working when killed
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    n_left = log.read_bytes().count(b'\n')
    assert 1 <= n_left < 4 and not (tmp_path / 'cut' / 'summary.json').exists()

    again = start(tmp_path / 'cfg.yaml', tmp_path / 'cut')
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    got = json.loads(out)
    assert got['n_resumed'] == n_left and got['n_generated'] == 4 - n_left
    assert log.read_bytes() == (tmp_path / 'whole' / 'questions.jsonl').read_bytes()
    drop = ('seconds', 'n_resumed', 'n_generated')
    assert {k: v for k, v in got.items() if k not in drop} == {k: v for k, v in want.items() if k not in drop}
    for f in ('summary.json', f'samples/{SMOL}.json'):
        a, b = json.loads((tmp_path / 'cut' / f).read_text()), json.loads((tmp_path / 'whole' / f).read_text())
        for d in (a, b):
            for k in drop: d.pop(k, None)
        assert a == b, f
    # the samples round-trip into the offline simulator's SampleSet
    ss = load_collected(tmp_path / 'cut' / 'samples')
    direct = records_to_sampleset(records(tmp_path / 'cut'), MuxRunConfig.from_dict(cfg))
    assert ss.answers.tolist() == direct.answers.tolist() and ss.correct_table.tolist() == direct.correct_table.tolist()
    assert SampleSet.load(tmp_path / 'cut' / 'samples.npz').answers.tolist() == direct.answers.tolist()


# --- one model at a time ---------------------------------------------------------------------------------------

def test_generate_in_turn_loads_each_model_once_and_matches_a_run_by_question(tmp_path, done, smol, monkeypatch):
    "Two runs (GSM8K and GPQA) share SmolLM2: it is loaded once, answers both, is let go; the decisions match asking by question."
    gpqa = {**TINY, 'benchmark': 'gpqa', 'n_questions': 2, 'k': 2}
    runs = [MuxRun(MuxRunConfig.from_dict(TINY), tmp_path / 'gsm8k'), MuxRun(MuxRunConfig.from_dict(gpqa), tmp_path / 'gpqa')]
    import mixexperts.mux_live as ml
    loads, real = [], ml.load_backend
    monkeypatch.setattr(ml, 'load_backend', lambda mc, *a: loads.append(mc.name) or real(mc, *a))   # counts the real loads
    calls = generate_in_turn(runs)
    assert loads == [SMOL] and calls == {SMOL: 2 + 1}       # 3 GSM8K questions in batches of 2, 2 GPQA questions in one
    assert all(r.backends == {} for r in runs)
    s = runs[0].run()
    assert runs[0].n_generate_calls == 2                      # the ones generate made; run asked nobody
    assert (tmp_path / 'gsm8k' / 'questions.jsonl').read_bytes() == (done[0] / 'questions.jsonl').read_bytes()
    assert runs[1].run()['total_count'] == 2 and runs[1].n_generate_calls == 1
    recs = records(tmp_path / 'gpqa')
    items = {it.qid: it for it in get_benchmark('gpqa').load()}
    for r in recs:   # the option order is recorded with each question
        it = items[r['qid']]
        assert (r['choice_seed'], r['choices'], r['reference_answer']) == (it.seed, it.choices, it.reference)


def test_interrupted_generation_resumes_after_the_last_batch_written(tmp_path, done, smol):
    cfg = MuxRunConfig.from_dict(TINY)
    first = MuxRun(cfg, tmp_path, backends={SMOL: smol})
    assert first.generate() == 2
    log = tmp_path / 'generations' / f'{SMOL}.jsonl'
    lines = log.read_bytes().split(b'\n')
    log.write_bytes(lines[0] + b'\n' + lines[1][:40])           # the second batch cut mid-write
    again = MuxRun(cfg, tmp_path, backends={SMOL: smol})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        assert again.generate() == 1                              # only the cut batch is asked again
    assert any('incomplete last line' in str(x.message) for x in w)
    again.run()
    assert (tmp_path / 'questions.jsonl').read_bytes() == (done[0] / 'questions.jsonl').read_bytes()
    bad = log.read_text().replace('"gsm8k:0"', '"gsm8k:7"')
    log.write_text(bad)
    (tmp_path / 'questions.jsonl').unlink()
    with pytest.raises(DataFormatError, match='holds other questions than this run asks'): MuxRun(cfg, tmp_path, backends={SMOL: smol}).run()
    forced = MuxRun(cfg, tmp_path, backends={SMOL: smol}, force=True)
    assert forced.generate() == 2 and not (tmp_path / 'questions.jsonl').exists()   # force: the old answers are gone, once


def test_read_run_table_and_replay(done):
    cfg, recs = read_run(done[0])
    s = done[1]
    tab = record_table(recs, [SMOL])
    assert list(tab.columns) == [SMOL, 'mean single', 'MUX', 'oracle'] and len(tab) == s['total_count']
    assert tab['MUX'].mean() == pytest.approx(s['accuracy']) and tab['oracle'].mean() == pytest.approx(s['oracle_accuracy'])
    assert (tab['MUX'] <= tab['oracle']).all()
    sim = records_simulation(recs, cfg)   # one model: the replay answers as the run did, where the model's majority is unique
    assert sim.test.sum() == len(tab) and sim.trials == 1
    from collections import Counter
    def unique_majority(answers):
        top = Counter(a for a in answers if a is not None).most_common(2)
        return len(top) < 2 or top[0][1] > top[1][1]
    unique = [unique_majority(r['calls'][SMOL]['extracted']) for r in recs if r['split'] == 'test']
    replay = sim.per_question(sim.mux()[1])
    assert any(unique) and all(a == b for a, b, u in zip(replay, tab['MUX'], unique) if u)
