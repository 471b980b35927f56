"""Answer extraction and equivalence: the notebook's case table, bad input, threads, and every shared gold answer."""
import concurrent.futures, json, time
import pytest

from mixexperts.core import MixExpertsError, data_path
from mixexperts.extract import (EXTRACT_CASES, EXTRACTORS, CheckTimeout, call_with_timeout, check_case, extract,
                                get_extractor, is_equivalent, normalize)


@pytest.mark.parametrize('row', EXTRACT_CASES, ids=[f'{i}-{r[0]}' for i, r in enumerate(EXTRACT_CASES)])
def test_case_table(row):
    assert check_case(*row) == []


def test_table_is_large_and_covers_every_extractor():
    assert len(EXTRACT_CASES) >= 60
    assert {r[0] for r in EXTRACT_CASES} == set(EXTRACTORS)


GOLD = {'math_boxed': '42', 'gsm_number': '42', 'mcq_letter': 'A', 'free_text': '42'}


@pytest.mark.parametrize('kind', sorted(EXTRACTORS))
@pytest.mark.parametrize('text', [None, '', '   ', '\n\t', 'no answer in here at all'])
def test_empty_or_answerless_input_is_a_miss_not_a_crash(kind, text):
    got = extract(kind, text)
    if kind == 'free_text' and text and text.strip(): assert got == text.strip()
    else: assert got is None
    assert is_equivalent(kind, got, GOLD[kind]) is False
    assert is_equivalent(kind, GOLD[kind], text if not (text and text.strip()) else None) is False


def test_bad_options_and_types():
    with pytest.raises(MixExpertsError, match='unknown extractor'): get_extractor('nope')
    with pytest.raises(MixExpertsError, match='which'): get_extractor('math_boxed', which='middle')
    with pytest.raises(MixExpertsError, match='n_choices'): get_extractor('mcq_letter', n_choices=0)
    with pytest.raises(MixExpertsError, match='must be a string'): normalize('gsm_number', ['1'])


def test_mcq_letters_are_limited_to_the_choices():
    three = get_extractor('mcq_letter', n_choices=3)
    assert three.extract('The answer is (D).') is None
    assert three.normalize(3) is None and three.normalize('C') == 'C'


def test_reference_bugs_are_fixed():
    assert normalize('gsm_number', '#### 1,234') == '1234'
    assert is_equivalent('gsm_number', '18.00', '18') and normalize('gsm_number', '0.5') == '0.5'
    assert extract('math_boxed', r'$\boxed{1}$ ... $\boxed{2}$') == '2'
    for gold in [r'\left( 3, \frac{\pi}{2} \right)', r'90^\circ', 'x=5', r'\text{Evelyn}']:
        assert is_equivalent('math_boxed', gold, gold)
    assert is_equivalent('math_boxed', '90', r'90^\circ') and is_equivalent('math_boxed', '5', 'x=5')
    assert extract('mcq_letter', 'Clearly this is hard. Because of that') is None


def test_equivalence_from_many_threads():
    pairs = [(r'\frac{1}{2}', '0.5', True), ('2(k+1)', '2k+2', True), ('3', '4', False), (r'\sqrt{8}', r'2\sqrt{2}', True),
             ('(1,2)', '(2,1)', False), (r'\{1,-2\}', '-2,1', True)] * 3
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        got = list(ex.map(lambda p: is_equivalent('math_boxed', p[0], p[1]), pairs))
    assert got == [p[2] for p in pairs]


def test_timeout_in_main_thread_and_in_a_thread():
    t0 = time.perf_counter()
    with pytest.raises(CheckTimeout): call_with_timeout('time:sleep', (20,), 0.3)
    assert time.perf_counter() - t0 < 2
    def slow():
        with pytest.raises(CheckTimeout): call_with_timeout('time:sleep', (20,), 0.5)
        return call_with_timeout('operator:add', (2, 3), 10)  # the worker is replaced and works again
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(1) as ex: assert ex.submit(slow).result() == 5
    assert time.perf_counter() - t0 < 10


def _jsonl(name):
    with open(data_path('reasoning', name), encoding='utf-8') as f: return [json.loads(l) for l in f]


def test_every_math500_gold_answer_normalises_and_matches_itself():
    mb = get_extractor('math_boxed')
    rows = _jsonl('math500.jsonl')
    assert len(rows) == 500
    assert all(mb.gold(r['answer']) for r in rows)
    assert all(mb.equivalent(r['answer'], r['answer']) for r in rows)


def test_every_gsm8k_gold_answer_reduces_to_its_number():
    g = get_extractor('gsm_number')
    rows = _jsonl('gsm8k_test.jsonl')
    assert len(rows) == 1319
    nums = [g.gold(r['answer']) for r in rows]
    assert None not in nums
    assert all(g.equivalent(n, r['answer']) for n, r in zip(nums, rows))
    assert all(',' not in n for n in nums)
