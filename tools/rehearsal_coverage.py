"""Line coverage of the pool layer by its CPU rehearsal tests, child processes included.

Usage: python tools/rehearsal_coverage.py [--data DIR] [--no-run] [PYTEST ARGS...]   (default: tests -k 'pool or vllm' -q)

Runs pytest under coverage.py with this checkout's `mixexperts` as the measured source (`source` is the folder of
this file's checkout, whatever the installed package points at, and PYTHONPATH puts it first), with `patch =
subprocess`: every Python child (the `mixexperts` CLI, lm-eval jobs, `mixexperts serve` servers, Ray workers) starts
coverage from the `.pth` file coverage installs and writes its own data file; `sigterm = true` saves the data of
servers stopped by SIGTERM, `_exit` that of processes leaving through `os._exit` (Ray workers). The data files are combined, and for each module of the pool layer (POOL_MODULES) it
prints the unexecuted line ranges with their enclosing function, then one JSON line:

    {"modules": {module: [[function, first, last], ...]}, "uncovered_functions": [...], "excluded": {...}, "ok": bool}

`ok` means only the functions of ALLOWED are left unexecuted, those that need a GPU: the import of vLLM's own classes
(`vllm_api`; the rehearsal runs the same code on its CPU stand-in engine), `vllm_available`'s answer on a CUDA
machine, and the question to a CUDA device whether it computes in bf16. Every other line, the `vllm serve` path of
`pool serve` included (a stand-in `vllm` on PATH, exec'd by `start_server`), runs on a CPU machine. UNRECORDED names
the one function that runs in the tests but where coverage cannot record it: the body of a Ray task, in a Ray worker
that Ray ends without Python's exit (no atexit, no signal handler), so its data file is never written; it is reported
apart and does not count against `ok`. Lines excluded from measurement (`# pragma: no cover`) are listed under "excluded", so nothing is
hidden. Exit status: 0 when ok, 1 otherwise (pytest's own failures are reported and also give 1).
"""
import argparse, ast, json, os, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / 'mixexperts'
POOL_MODULES = ['pool', 'pool_serve', 'backends', 'remote', 'hubstub', 'models', 'commands.pool', 'commands.pool_serve']
# the functions no CPU machine can run (tests/test_vllm.py runs them on a GPU)
ALLOWED = {'remote.vllm_api',           # imports vLLM's LLM, SamplingParams, TokensPrompt, LoRARequest
           'remote.vllm_available',     # its last lines: a CUDA GPU is visible
           'backends.cuda_bf16'}         # asks a CUDA device whether it computes in bf16
# run by the tests (test_pool_eval.py's Ray rehearsal) in a process whose coverage data is lost when Ray ends it
UNRECORDED = {'pool._ray_job'}
DEFAULT_PYTEST = ['tests', '-k', 'pool or vllm', '-q']

RC = """[run]
source = {pkg}
parallel = true
patch = subprocess, _exit
sigterm = true
data_file = {data}/.coverage
"""


def run_tests(data:Path, pytest_args:list) -> int:
    "pytest under coverage (children measured too), then the data files combined: pytest's exit status."
    rc = data / 'coveragerc'
    rc.write_text(RC.format(pkg=PKG, data=data))
    for f in data.glob('.coverage*'): f.unlink()
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(ROOT), *filter(None, [os.environ.get('PYTHONPATH')])]),
           'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'MPLBACKEND': 'Agg'}
    code = subprocess.run([sys.executable, '-m', 'coverage', 'run', f'--rcfile={rc}', '-m', 'pytest', *pytest_args], cwd=ROOT, env=env).returncode
    subprocess.run([sys.executable, '-m', 'coverage', 'combine', f'--rcfile={rc}', '-q'], cwd=ROOT, env=env, check=True)
    return code


def functions(path:Path) -> list:
    "[(first line, last line, qualified name)] of every function and class; a fastcore `@patch` on `self:Cls` is `Cls.name`."
    out = []
    def visit(node, prefix):
        for ch in ast.iter_child_nodes(node):
            if isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = ch.name
                args = getattr(ch, 'args', None)
                if not prefix and args and args.args and isinstance(args.args[0].annotation, ast.Name) and args.args[0].arg == 'self':
                    name = f'{args.args[0].annotation.id}.{name}'
                first = min([ch.lineno, *(d.lineno for d in ch.decorator_list)])
                out.append((first, ch.end_lineno, prefix + name))
                visit(ch, prefix + name + '.')
            else: visit(ch, prefix)
    visit(ast.parse(path.read_text(encoding='utf-8')), '')
    return out


def enclosing(funcs:list, line:int) -> str:
    "The innermost function or class holding `line` ('<module>' at top level)."
    inside = [f for f in funcs if f[0] <= line <= f[1]]
    return max(inside, key=lambda f: f[0])[2] if inside else '<module>'


def analyse(data:Path, modules:list) -> dict:
    "The report of the combined data in `data` for `modules`."
    import coverage
    cov = coverage.Coverage(data_file=str(data / '.coverage'), config_file=str(data / 'coveragerc'))
    cov.load()
    mods, excluded, unmeasured = {}, {}, []
    for m in modules:
        path = PKG.joinpath(*m.split('.')).with_suffix('.py')
        _, statements, excl, missing, _ = cov.analysis2(str(path))
        if statements and statements[0] in missing: unmeasured.append(m)   # its imports never ran: not imported from this checkout
        funcs = functions(path)
        mods[m] = runs_of(statements, missing, funcs)
        if excl: excluded[m] = sorted({enclosing(funcs, l) for l in excl})
    uncovered = sorted({f"{m}.{fn}" for m, rs in mods.items() for fn, _, _ in rs})
    ok = (not unmeasured and all(f in ALLOWED | UNRECORDED for f in uncovered)
          and not any(f"{m}.{fn}" not in ALLOWED for m, fs in excluded.items() for fn in fs))
    return dict(modules=mods, uncovered_functions=uncovered, excluded=excluded, unmeasured=unmeasured, allowed=sorted(ALLOWED),
                unrecorded=sorted(UNRECORDED), ok=ok)


def runs_of(statements, missing, funcs) -> list:
    "[[function, first, last]]: maximal runs of unexecuted statements of one function, no executed statement between."
    out, prev_missing = [], False
    missing = set(missing)
    for line in sorted(statements):
        if line in missing:
            fn = enclosing(funcs, line)
            if prev_missing and out[-1][0] == fn: out[-1][2] = line
            else: out.append([fn, line, line])
        prev_missing = line in missing
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', help='folder for the coverage data (default: a temporary one)')
    ap.add_argument('--no-run', action='store_true', help='analyse the combined data already in --data')
    ap.add_argument('--modules', default=','.join(POOL_MODULES), help='modules to report (comma-separated, below mixexperts)')
    a, pytest_args = ap.parse_known_args(argv)
    if a.no_run and not a.data: ap.error('--no-run needs --data')
    data = Path(a.data or tempfile.mkdtemp(prefix='rehearsal-coverage-')).resolve()
    data.mkdir(parents=True, exist_ok=True)
    code = 0 if a.no_run else run_tests(data, pytest_args or DEFAULT_PYTEST)
    rep = analyse(data, a.modules.split(','))
    for m, rs in rep['modules'].items():
        print(f"mixexperts/{m.replace('.', '/')}.py: " + ('every line executed' if not rs else f"{len(rs)} unexecuted range(s)"))
        for fn, first, last in rs:
            note = '  (allowed: needs a GPU)' if f'{m}.{fn}' in ALLOWED else '  (runs in a Ray worker: not recordable)' if f'{m}.{fn}' in UNRECORDED else ''
            print(f"  {first}-{last}  {fn}{note}")
    for m in rep['unmeasured']: print(f"mixexperts/{m}: never imported from {ROOT} (is PYTHONPATH honoured by the children?)")
    if code: print(f"pytest exited with status {code}")
    print(f"coverage data: {data}")
    print(json.dumps({**rep, 'pytest_status': code}))
    sys.exit(0 if rep['ok'] and code == 0 else 1)


if __name__ == '__main__': main()
