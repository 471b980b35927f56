"""Build the documentation site offline from the notebooks: `python tools/build_docs.py [--executed DIR] [--papers-run DIR] [-o _docs]`.

Engine: Quarto (the standard nbdev route) when `quarto` is on PATH and --engine is auto/quarto; otherwise MkDocs with
mkdocs-material (search included) and mkdocs-jupyter, which pip-install here (the `docs` extra).

Pages:
- Home: nbs/index.ipynb, with its executed output.
- API: one page per module notebook (nbs/NN_*.ipynb with `#| default_exp`) with its executed output (text, tables,
  figures): the prose and code of the chapter, with the `show_doc` reference (signature, docstring, parameter table)
  of every exported name inserted after the cell that defines it, as `nbdev_proc_nbs` does. `#| hide` cells are
  dropped. The outputs come from `tools/run_chapters.py`'s folder (--executed; `make test` writes `_executed/`), so a
  chapter runs once for both the tests and the docs; a chapter missing there, or whose code changed since, is run
  here the same way (cells flagged slow/gpu skipped). Long code lines wrap within the page (EXTRA_CSS below).
- Papers: the executed paper notebooks (with their figures) from a `mixexperts reproduce` run folder
  (--papers-run; default runs/reproduce when it exists), else the unexecuted papers/*.ipynb.
"""
import argparse, ast, importlib, json, os, re, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'tools'))
import run_chapters  # noqa: E402  (tools/run_chapters.py: the one way a chapter is executed)
NBS, PAPERS = ROOT/'nbs', ROOT/'papers'
PAPER_ORDER = ['mom', 'bench_coe', 'slm_mux', 'model_swarms', 'bwr']
_DIRECTIVE = re.compile(r'^\s*#\|\s*(\S+)(.*)$')


def _directives(src: str) -> dict:
    "The `#| name args` lines of a cell."
    out = {}
    for line in src.splitlines():
        m = _DIRECTIVE.match(line)
        if m: out[m.group(1)] = m.group(2).strip()
    return out


def _strip_directives(src: str) -> str:
    return '\n'.join(l for l in src.splitlines() if not _DIRECTIVE.match(l)).strip('\n')


def _defined_names(src: str) -> list:
    "Top-level functions and classes a cell defines (the names `show_doc` documents)."
    try: tree = ast.parse(src)
    except SyntaxError: return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith('_')]


def _show_doc_md(obj) -> str:
    from nbdev.showdoc import show_doc
    md = show_doc(obj)._repr_markdown_()
    md = re.sub(r'\[source\]\(([^)]*)\)\{[^}]*\}', '', md)  # Quarto link attributes mean nothing to MkDocs
    return md.replace('\n---\n', '\n', 1).strip()


def executed_chapters(executed=None, scratch=None) -> dict:
    "file name → executed notebook for every chapter: from the folder `executed` when current there, else run now into `scratch`."
    wanted = {p.name: p for p in run_chapters.chapters(NBS)}
    found = {}
    if executed:
        ex = Path(executed)
        for n, p in wanted.items():
            if run_chapters.is_current(ex/n, p): found[n] = ex/n
    todo = [p for n, p in wanted.items() if n not in found]
    if todo:
        out = Path(scratch or tempfile.mkdtemp(prefix='chapters-'))/'executed'
        print(f"executing {len(todo)} chapter(s) for their outputs{' (missing or changed in ' + str(executed) + ')' if executed else ''}: "
              + ', '.join(p.stem for p in todo), flush=True)
        res = run_chapters.run_chapters(out, todo, n_workers=2, timing=False)
        failed = [n for n, ok, _ in res if not ok]
        if failed: raise SystemExit(f"chapters failed while executing them for the docs: {', '.join(failed)}")
        found.update({p.name: out/p.name for p in todo if (out/p.name).exists()})
    return found


def _with_outputs(nb: dict, executed: Path) -> dict:
    "`nb` with the outputs and execution counts of its code cells from the executed copy `executed` (matched by cell id)."
    done = {c.get('id'): c for c in json.loads(executed.read_text())['cells'] if c.get('cell_type') == 'code'}
    for c in nb['cells']:
        r = done.get(c.get('id')) if c['cell_type'] == 'code' else None
        if r is not None: c['outputs'], c['execution_count'] = r.get('outputs', []), r.get('execution_count')
    return nb


def api_notebook(path: Path, executed: Path | None = None) -> tuple:
    "A module notebook → (module name, notebook dict) ready to render: hidden cells dropped, show_doc inserted, outputs from `executed`."
    nb = json.loads(path.read_text())
    if executed: nb = _with_outputs(nb, Path(executed))  # outputs from the run; the cells themselves (with their directives) from the file
    module = None
    for c in nb['cells']:
        if c['cell_type'] == 'code' and 'default_exp' in _directives(''.join(c['source'])):
            module = _directives(''.join(c['source']))['default_exp'].split()[0]
    if module is None: return None, None
    mod = importlib.import_module(f'mixexperts.{module}')
    cells = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] != 'code': cells.append(c); continue
        d = _directives(src)
        if 'hide' in d or 'default_exp' in d: continue
        body = _strip_directives(src)
        if not body.strip(): continue
        cells.append(dict(c, source=body, outputs=c.get('outputs', []) if executed else [], execution_count=c.get('execution_count') if executed else None))
        if 'export' in d or 'exports' in d:
            for name in _defined_names(body):
                obj = getattr(mod, name, None)
                if obj is None: continue
                try: md = _show_doc_md(obj)
                except Exception as e: md = f'### {name}\n\n(show_doc failed: {e})'
                cells.append(dict(cell_type='markdown', metadata={}, source=md))
    nb['cells'] = cells
    return module, nb


def _title(nb: dict, default: str) -> str:
    for c in nb['cells']:
        if c['cell_type'] == 'markdown':
            m = re.search(r'^#\s+(.+)$', ''.join(c['source']), re.M)
            if m: return m.group(1).strip()
    return default


EXTRA_CSS = """/* written by tools/build_docs.py: notebook code and text output wrap within the page instead of running off its right edge */
.jupyter-wrapper .jp-InputArea-editor pre, .jupyter-wrapper .highlight pre,
.jupyter-wrapper .jp-RenderedText pre, .jupyter-wrapper .jp-OutputArea-output pre {
  white-space: pre-wrap; overflow-wrap: anywhere; word-break: normal; overflow-x: hidden;
}
.jupyter-wrapper .jp-Cell, .jupyter-wrapper .jp-InputArea, .jupyter-wrapper .jp-OutputArea, .jupyter-wrapper .jp-OutputArea-child,
.jupyter-wrapper .jp-InputArea-editor, .jupyter-wrapper .jp-OutputArea-output { min-width: 0; max-width: 100%; }
/* wide tables and images scroll or shrink inside their own box */
.jupyter-wrapper .jp-RenderedHTMLCommon { overflow-x: auto; }
.jupyter-wrapper .jp-RenderedImage img { max-width: 100%; height: auto; }
.md-typeset pre > code { white-space: pre-wrap; overflow-wrap: anywhere; }
"""


def _tidy_paper(src: Path) -> dict:
    "An executed paper notebook, its stream outputs tidied as the chapters' are (progress-bar updates collapsed)."
    nb = json.loads(src.read_text())
    for c in nb['cells']:
        if c['cell_type'] == 'code' and c.get('outputs'): c['outputs'] = run_chapters.tidy_outputs(c['outputs'])
    return nb


def stage(src_dir: Path, papers_run: list, executed: dict) -> list:
    "Write the pages into `src_dir`; `executed`: chapter file name → executed notebook. Returns the MkDocs nav."
    src_dir.mkdir(parents=True, exist_ok=True)
    (src_dir/'stylesheets').mkdir()
    (src_dir/'stylesheets'/'extra.css').write_text(EXTRA_CSS)
    index = json.loads((NBS/'index.ipynb').read_text())
    if 'index.ipynb' in executed: index = _with_outputs(index, executed['index.ipynb'])
    (src_dir/'index.ipynb').write_text(json.dumps(index))
    nav = [{'Home': 'index.ipynb'}]
    api = []
    (src_dir/'api').mkdir()
    if (NBS/'images').is_dir(): shutil.copytree(NBS/'images', src_dir/'api'/'images')   # figures the chapters' markdown shows
    for p in sorted(NBS.glob('[0-9]*.ipynb')):
        module, nb = api_notebook(p, executed.get(p.name))
        if module is None: continue
        (src_dir/'api'/f'{module}.ipynb').write_text(json.dumps(nb))
        api.append({f'{module}: {_title(nb, module)}': f'api/{module}.ipynb'})
    nav.append({'API': api})
    (src_dir/'papers').mkdir()
    papers = []
    have = {p.stem: p for p in PAPERS.glob('*.ipynb')}
    for name in [p for p in PAPER_ORDER if p in have] + sorted(set(have) - set(PAPER_ORDER)):
        found = [r/name/f'{name}.ipynb' for r in (papers_run or []) if (r/name/f'{name}.ipynb').exists()]
        ran = found[0] if found else None
        src = ran or have[name]
        nb = _tidy_paper(src) if ran else json.loads(src.read_text())
        (src_dir/'papers'/f'{name}.ipynb').write_text(json.dumps(nb))
        for png in (src.parent.glob('*.png') if ran else []):
            shutil.copy(png, src_dir/'papers'/f'{name}_{png.name}')
        papers.append({_title(nb, name).split(' — ')[0].split(':')[0]: f'papers/{name}.ipynb'})
    if papers: nav.append({'Papers': papers})
    return nav


def mkdocs_config(src_dir: Path, out: Path, nav: list) -> Path:
    cfg = dict(site_name='mixexperts', site_description='Model collaboration: routing, voting, merging',
               repo_url='https://github.com/mixexperts/mixexperts', docs_dir=str(src_dir), site_dir=str(out),
               use_directory_urls=False, nav=nav,
               theme={'name': 'material', 'features': ['navigation.sections', 'search.highlight']},
               extra_css=['stylesheets/extra.css'],
               plugins=['search', {'mkdocs-jupyter': {'include_source': False, 'execute': False, 'ignore_h1_titles': False,
                                                      'include_requirejs': False}}],
               markdown_extensions=['tables', 'admonition', 'pymdownx.superfences'])
    import yaml
    p = src_dir.parent/'mkdocs.yml'
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def build(out=ROOT/'_docs', papers_run=None, engine='auto', executed=None, execute=True) -> Path:
    """Build the site in `out`. `executed`: a `tools/run_chapters.py` output folder (chapters missing or changed there
    are run here); `execute=False` renders the chapters without output (a quick look at the prose)."""
    out = Path(out).resolve()
    if not papers_run and (ROOT/'runs'/'reproduce').exists(): papers_run = [ROOT/'runs'/'reproduce']
    if isinstance(papers_run, (str, Path)): papers_run = [papers_run]
    papers_run = [Path(r).resolve() for r in papers_run or []]
    if engine == 'auto': engine = 'quarto' if shutil.which('quarto') else 'mkdocs'
    scratch = tempfile.TemporaryDirectory()
    try: return _build(out, papers_run, engine, executed_chapters(executed, scratch.name) if execute else {})
    finally: scratch.cleanup()


def _build(out: Path, papers_run: list, engine: str, ran: dict) -> Path:
    if engine == 'quarto':  # the nbdev route: process the notebooks, then render with Quarto
        env = dict(os.environ)
        subprocess.run([str(Path(sys.executable).parent/'nbdev_proc_nbs')], cwd=ROOT, check=True, env=env)
        for name, ex in ran.items():  # nbdev's processed copies with the executed outputs
            proc = ROOT/'_proc'/name
            if proc.exists(): proc.write_text(json.dumps(_with_outputs(json.loads(proc.read_text()), ex)))
        (ROOT/'_proc'/'papers').mkdir(parents=True, exist_ok=True)
        for name, nb in {p.stem: p for p in PAPERS.glob('*.ipynb')}.items():
            runs = [r/name/f'{name}.ipynb' for r in papers_run if (r/name/f'{name}.ipynb').exists()]
            (ROOT/'_proc'/'papers'/f'{name}.ipynb').write_text(json.dumps(_tidy_paper(runs[0]) if runs else json.loads(nb.read_text())))
        subprocess.run(['quarto', 'render', str(ROOT/'_proc'), '--output-dir', str(out)], cwd=ROOT, check=True)
        return out
    with tempfile.TemporaryDirectory() as tmp:
        src_dir = Path(tmp)/'docs'
        nav = stage(src_dir, papers_run, ran)
        cfg = mkdocs_config(src_dir, out, nav)
        if out.exists(): shutil.rmtree(out)
        subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--quiet', '-f', str(cfg)], cwd=tmp, check=True)
    print(f'docs built with {engine} in {out} (chapters executed: {len(ran)}; '
          f'papers from {[str(r) for r in papers_run] or "papers/ (unexecuted)"})')
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('-o', '--out', default=str(ROOT/'_docs'), help='site folder (default _docs/)')
    p.add_argument('--executed', default=None, help="a `tools/run_chapters.py` folder of executed chapters (`make test` writes _executed/); "
                                                    "chapters missing or changed there are executed here; without it every chapter is")
    p.add_argument('--no-execute', action='store_true', help='render the chapters without output (quick look at the prose)')
    p.add_argument('--papers-run', action='append', default=None, help='a `mixexperts reproduce` run folder with the executed paper notebooks (repeatable; first match wins)')
    p.add_argument('--engine', default='auto', choices=('auto', 'mkdocs', 'quarto'), help='auto: quarto when on PATH, else mkdocs')
    a = p.parse_args(argv)
    build(a.out, a.papers_run, a.engine, a.executed, not a.no_execute)


if __name__ == '__main__':
    main()
