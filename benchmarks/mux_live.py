"""The live SLM-MUX runs of the mux_live chapter, rerun and compared with a stored baseline.

Both configs of data/mux/ (SmolLM2-135M-Instruct + Gemma-3-270M; GSM8K: 30 test + 10 validation questions, k = 3;
MMLU: 30 + 20, k = 5) are run with `MuxRun` into OUT/<benchmark> and their summaries compared with
benchmarks/baselines/mux_live.json: right answers of the MUX and of each model alone, the oracle, agreements,
tie-breaks, validation accuracies, how often each model was picked, and the tokens used. The chapter
(nbs/05b_mux_live.ipynb) checks how these numbers relate; the counts are checked here.

Sampling is seeded per batch of questions, so on one machine (CPU, float32, one torch thread) the runs repeat
exactly: counts must match the baseline exactly (COUNT_TOLERANCE), tokens within TOKEN_TOLERANCE (relative). Other
hardware may sample differently. A folder that already holds the finished run with the same config is resumed
(nothing is generated: the summary is recomputed from its records); `--force` starts over. A full run takes
20-40 minutes on a CPU.

Usage: OMP_NUM_THREADS=1 python benchmarks/mux_live.py [--bench gsm8k mmlu] [--out runs/mux_live/bench] [--force] [--write]
The last line printed is one JSON object: ok, n_compared, n_differ, seconds, ...
"""
import argparse, json, sys, time
from pathlib import Path

from mixexperts.mux_live import MuxRun, load_mux_config, run_summary_text

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / 'benchmarks' / 'baselines' / 'mux_live.json'
COMMAND = 'OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mux_live.py'
MODELS = ['smollm2-135m-instruct', 'gemma']
COUNT_TOLERANCE, TOKEN_TOLERANCE = 0, 0.02


def counts(s: dict) -> dict:
    "The summary's numbers as counts of questions (and tokens)."
    n, nv = s['total_count'], s['n_validation']
    agree = round(s['all_agree_rate'] * n)
    va = s['validation_accuracy'] or {}
    return dict(total_count=n, n_validation=nv, correct_count=s['correct_count'],
                single_correct=[round(s['single_accuracy'][m] * n) for m in MODELS],
                oracle_correct=round(s['oracle_accuracy'] * n), all_agree=agree,
                all_agree_correct=round((s['all_agree_accuracy'] or 0.0) * agree), tie_breaks=round(s['tie_break_rate'] * n),
                validation_correct=[round(va.get(m, 0.0) * nv) for m in MODELS],
                selected=[s['selected_counts'][m] for m in MODELS],
                tokens=[s['token_usage']['total'][k] for k in ('prompt_tokens', 'completion_tokens')])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--bench', nargs='+', default=['gsm8k', 'mmlu'], choices=('gsm8k', 'mmlu'))
    ap.add_argument('--out', default=str(ROOT / 'runs' / 'mux_live' / 'bench'), help='parent folder of the run folders')
    ap.add_argument('--force', action='store_true', help='discard finished runs in the folders and generate again')
    ap.add_argument('--baseline', default=str(BASELINE))
    ap.add_argument('--write', action='store_true', help="replace the baseline's entries for these benchmarks with this run's numbers")
    a = ap.parse_args()
    t0, got, seconds = time.perf_counter(), {}, {}
    for bench in a.bench:
        cfg, _ = load_mux_config(ROOT / 'data' / 'mux' / f'live_{bench}.yaml')
        t1 = time.perf_counter()
        s = MuxRun(cfg, Path(a.out) / bench, force=a.force).run(progress=True)
        seconds[bench] = round(time.perf_counter() - t1, 1)
        print(run_summary_text(s), '\n', flush=True)
        got[bench] = counts(s)
    path = Path(a.baseline)
    if a.write:
        doc = json.loads(path.read_text()) if path.exists() else dict(
            command=COMMAND, description='counts of the live runs of data/mux/live_*.yaml (models: ' + ', '.join(MODELS) + ')',
            count_tolerance=COUNT_TOLERANCE, token_tolerance_relative=TOKEN_TOLERANCE, runs={})
        doc['runs'].update(got)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1) + '\n', encoding='utf-8')
        print(json.dumps(dict(ok=True, wrote=str(path), seconds=seconds)))
        return
    want, rows = json.loads(path.read_text(encoding='utf-8'))['runs'], []
    for bench, g in got.items():
        for key, w in want[bench].items():
            gv, wv = (g[key], w) if isinstance(w, list) else ([g[key]], [w])
            for i, (x, y) in enumerate(zip(gv, wv)):
                tol = TOKEN_TOLERANCE * abs(y) if key == 'tokens' else COUNT_TOLERANCE
                rows.append((f'{bench}/{key}' + (f'[{i}]' if isinstance(w, list) else ''), x, y, abs(x - y), tol))
    bad = [r for r in rows if r[3] > r[4]]
    for p, x, y, d, tol in bad: print(f"differs: {p}: got {x}, baseline {y} (tolerance {tol:g})")
    out = dict(ok=not bad, n_compared=len(rows), n_differ=len(bad), count_tolerance=COUNT_TOLERANCE,
               token_tolerance_relative=TOKEN_TOLERANCE, accuracy={b: g['correct_count'] / g['total_count'] for b, g in got.items()},
               run_seconds=seconds, seconds=round(time.perf_counter() - t0, 1))
    print(json.dumps(out))
    if bad: sys.exit(1)


if __name__ == '__main__':
    main()
