"""Execute every chapter once, exactly as `nbdev_test` does, and keep the outputs: `python tools/run_chapters.py [-o _executed]`.

This is the notebook test of `make test` and the source of the docs' executed output, so each chapter runs once per
CI run. The run is nbdev's own: `nbdev.test.test_nb` on the notebooks `nbdev_test` would pick (nbglob, `.notest`),
with settings.ini's `tst_flags` skipped (`#| slow`, `#| gpu`, `#| eval: false`), in the nbs folder, `--n_workers`
processes (fastcore's `parallel`), execnb's `CaptureShell.run_all` filling each cell's outputs. The only addition is
that the shell nbdev creates is kept, so the executed cells can be written back.

Each chapter that passes is written to OUT/<name>.ipynb: the notebook file as it is in nbs/ (directives, ids and
metadata kept) with the outputs and execution counts of the cells that ran; carriage-return updates of progress
bars are collapsed to the line a terminal would show. Skipped cells keep no output. OUT/manifest.json records
status and seconds per chapter. A failing chapter prints its name, the cell and the traceback; the exit code is 1.

`MIXEXPERTS_PROGRESS=text` is set for the run, so progress bars print plain text (`mixexperts.core.progress`).
"""
import argparse, json, os, re, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT/'_executed'
_CR = re.compile(r'[^\n]*\r(?=[^\n])')  # text a later carriage return overwrites (nbconvert's coalesce_streams rule)


def collapse_cr(text: str) -> str:
    "Stream text as a terminal leaves it: what a carriage return overwrote is dropped, trailing `\\r` too."
    return _CR.sub('', text).replace('\r\n', '\n').rstrip('\r')


def tidy_outputs(outputs: list) -> list:
    "Outputs as saved: consecutive streams of one name merged, carriage-return updates collapsed."
    out = []
    for o in outputs:
        if o.get('output_type') == 'stream' and out and out[-1].get('output_type') == 'stream' and out[-1].get('name') == o.get('name'):
            out[-1]['text'] = ''.join(out[-1]['text']) + ''.join(o['text'])
        else: out.append(dict(o))
    for o in out:
        if o.get('output_type') == 'stream':
            o['text'] = collapse_cr(''.join(o['text'])).splitlines(True)
    return [o for o in out if o.get('output_type') != 'stream' or o['text']]


def code_sources(nb: dict) -> list:
    "(id, source) of every code cell: what an executed copy must match to stand for the notebook."
    return [(c.get('id'), ''.join(c['source']) if isinstance(c['source'], list) else c['source'])
            for c in nb['cells'] if c['cell_type'] == 'code']


def is_current(executed: Path, source: Path) -> bool:
    "Is `executed` a run of `source` as it is now (same code cells)? (Changes in other chapters' modules are not seen.)"
    try: return code_sources(json.loads(executed.read_text(encoding='utf-8'))) == code_sources(json.loads(source.read_text(encoding='utf-8')))
    except (OSError, ValueError, KeyError): return False


def merge_outputs(source: str, executed, ran: set) -> dict:
    "The notebook file's text `source` with the outputs of the `executed` (processed) notebook's cells whose id is in `ran`."
    from execnb.nbio import nb2dict
    nb = json.loads(source)
    done = {c.get('id'): c for c in nb2dict(executed)['cells'] if c.get('cell_type') == 'code' and c.get('id') in ran}
    n = 0
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        r = done.get(c.get('id'))
        n += bool(r)
        c['outputs'] = tidy_outputs(r.get('outputs', [])) if r else []
        c['execution_count'] = n if r else None
        outs = c['outputs']
        for o in outs:
            if o.get('output_type') == 'execute_result': o['execution_count'] = c['execution_count']
    return nb


def _cell_report(shell, nb) -> str:
    "The failing cell's source (first lines), to print with nbdev's traceback."
    i = getattr(shell, '_cell_idx', None)
    if not i or nb is None or i > len(nb.cells): return ''
    src = nb.cells[i - 1].source.splitlines()
    return 'cell source:\n    ' + '\n    '.join(src[:25] + (['...'] if len(src) > 25 else [])) + '\n'


THREADS_ENV = 'MIXEXPERTS_CHAPTER_THREADS'   # CPU threads per worker; set by run_chapters when workers share the cores


def limit_threads(n):
    """Cap this worker's compute threads at `n` (torch, BLAS/OpenMP pools, and the children it starts): chapters run side
    by side on a few cores are several times slower when each one's thread pools take every core."""
    if not n: return
    for v in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'): os.environ[v] = str(n)
    from threadpoolctl import threadpool_limits
    import torch
    threadpool_limits(int(n))
    torch.set_num_threads(int(n))


def run_one(fn: Path, out: str, skip_flags, force_flags, basepath):
    "Run one chapter with `nbdev.test.test_nb`; write it with outputs on success. (name, ok, seconds)."
    limit_threads(os.environ.get(THREADS_ENV))
    import nbdev.test as T
    from execnb.shell import CaptureShell
    kept = {}

    class KeepingShell(CaptureShell):  # nbdev's shell, remembered so its executed notebook can be written
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw); kept['shell'] = self
        def run_all(self, nb, *a, preproc=None, **kw):
            kept['nb'], ran = nb, kept.setdefault('ran', set())
            def pre(cell):  # nbdev's own skip rule, noting the cells it lets run
                skip = preproc(cell) if preproc else False
                if not skip: ran.add(cell.get('id'))
                return skip
            return super().run_all(nb, *a, preproc=pre, **kw)

    T.CaptureShell = KeepingShell
    dest = Path(out)/fn.name
    source = fn.read_text(encoding='utf-8')  # the file as nbdev reads it now, for the cells written back
    ok, secs = T.test_nb(fn, skip_flags=skip_flags, force_flags=force_flags, showerr=True, basepath=basepath)
    if not ok:
        sys.stderr.write(f'{fn.name} failed; ' + _cell_report(kept.get('shell'), kept.get('nb')))
        dest.unlink(missing_ok=True)
    elif 'nb' in kept:  # (a notebook nbdev skips whole, `skip_exec` or not Python, has no run)
        nb = merge_outputs(source, kept['nb'], kept.get('ran', set()))
        if any(c['cell_type'] == 'code' and not c.get('id') for c in nb['cells']):
            sys.stderr.write(f'warning: {fn.name} has code cells without ids (nbformat < 4.5); their outputs are not kept\n')
        nb.setdefault('metadata', {})['mixexperts_run'] = dict(runner='tools/run_chapters.py', skipped_flags=sorted(set(skip_flags) - set(force_flags)),
                                                                seconds=round(secs, 1))
        tmp = dest.with_suffix('.ipynb.tmp')
        tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')
        os.replace(tmp, dest)
    sys.stderr.flush()
    return fn.name, ok, secs


def _worker():
    """`run_one` from an importable module: nbdev's shell replaces `sys.modules['__main__']` in a worker, so a function
    pickled as `__main__.run_one` would not be found there for the worker's next chapter."""
    if __name__ != '__main__': return run_one
    if str(Path(__file__).parent) not in sys.path: sys.path.insert(0, str(Path(__file__).parent))
    import run_chapters
    return run_chapters.run_one


def chapters(path=None, ignore_fname='.notest') -> list:
    "The notebooks `nbdev_test` would run, sorted, absolute."
    from fastcore.xtras import working_directory
    from nbdev.doclinks import nbglob
    from nbdev.test import _keep_file
    with working_directory(ROOT):  # nbdev reads settings.ini from the working directory up
        return [f.absolute() for f in sorted(nbglob(path, as_path=True)) if _keep_file(f, ignore_fname)]


def run_chapters(out=DEFAULT_OUT, files=None, n_workers: int = 2, flags: str = '', timing: bool = True) -> list:
    "Execute `files` (default: every chapter) into `out`; [(name, ok, seconds)]."
    from fastcore.parallel import parallel
    from fastcore.xtras import working_directory
    from nbdev.config import get_config
    os.environ.setdefault('MIXEXPERTS_PROGRESS', 'text')  # plain-text progress bars in the saved outputs
    if n_workers > 1 and len(files or [None, None]) > 1:   # no oversubscription: the cores shared out among the workers
        os.environ.setdefault(THREADS_ENV, str(max(1, (os.cpu_count() or 1) // n_workers)))
    cfg = get_config(path=ROOT)
    files = chapters() if files is None else [Path(f).absolute() for f in files]
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    skip, force = cfg.tst_flags.split(), flags.split()
    t0 = time.perf_counter()
    with working_directory(cfg.nbs_path if cfg.nbs_path.exists() else os.getcwd()):
        res = parallel(_worker(), files, out=str(out), skip_flags=skip, force_flags=force, basepath=cfg.config_path,
                       n_workers=n_workers if len(files) > 1 else 0, pause=0.01)
    res = list(res)
    wall = time.perf_counter() - t0
    old = json.loads((out/'manifest.json').read_text()) if (out/'manifest.json').exists() else {}
    old.update({n: dict(ok=ok, seconds=round(s, 1)) for n, ok, s in res})
    (out/'manifest.json').write_text(json.dumps(old, indent=1, sort_keys=True) + '\n')
    if timing:
        for n, ok, s in sorted(res, key=lambda r: -r[2]): print(f'{n}: {s:.0f} s{"" if ok else "  FAILED"}')
    print(f'{len(res)} chapters in {wall:.0f} s with {n_workers} workers; executed notebooks in {out}')
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebooks', nargs='*', help='notebooks to run (default: every chapter nbdev_test would run)')
    p.add_argument('-o', '--out', default=str(DEFAULT_OUT), help='folder for the executed notebooks (default _executed/)')
    p.add_argument('--n_workers', type=int, default=2, help='parallel processes (default 2)')
    p.add_argument('--flags', default='', help='space-separated tst_flags to run anyway (as nbdev_test --flags)')
    a = p.parse_args(argv)
    res = run_chapters(a.out, a.notebooks or None, a.n_workers, a.flags)
    failed = [n for n, ok, _ in res if not ok]
    if failed:
        sys.stderr.write('\nchapters failed (tracebacks above):\n\t' + '\n\t'.join(failed) + '\n')
        return 1
    print('Success.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
