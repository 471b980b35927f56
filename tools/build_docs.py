"""Build the documentation site offline from the notebooks: `python tools/build_docs.py [--papers-run DIR] [-o _docs]`.

Engine: Quarto (the standard nbdev route) when `quarto` is on PATH and --engine is auto/quarto; otherwise MkDocs with
mkdocs-material (search included) and mkdocs-jupyter, which pip-install here (the `docs` extra).

Pages:
- Home: nbs/index.ipynb.
- API: one page per module notebook (nbs/NN_*.ipynb with `#| default_exp`), rendered unexecuted: the prose and code
  of the chapter, with the `show_doc` reference (signature, docstring, parameter table) of every exported name
  inserted after the cell that defines it, as `nbdev_proc_nbs` does. `#| hide` cells are dropped.
- Papers: the executed paper notebooks (with their figures) from a `mixexperts reproduce` run folder
  (--papers-run; default runs/reproduce when it exists), else the unexecuted papers/*.ipynb.
"""
import argparse, ast, importlib, json, os, re, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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


def execute_notebook(path: Path, skip_flags=('slow', 'gpu')) -> dict:
    "Run a notebook as `nbdev_test` does (cells flagged slow/gpu and `eval: false` skipped); the notebook with its outputs."
    from execnb.nbio import nb2str
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.process import NBProcessor
    nb = NBProcessor(path, procs=FrontmatterProc, process=True).nb
    def skip(cell):
        if cell.cell_type != 'code': return True
        if 'nbdev_export' + '(' in cell.source: return True
        d = getattr(cell, 'directives_', {}) or {}
        if d.get('eval:', [''])[0].lower() == 'false': return True
        return set(skip_flags) & d.keys()
    shell = CaptureShell(path)
    shell.run_cell('%matplotlib inline')
    with working_directory(path.parent): shell.run_all(nb, exc_stop=True, preproc=skip)
    return json.loads(nb2str(nb))


def api_notebook(path: Path, execute: bool = False) -> tuple:
    "A module notebook → (module name, notebook dict) ready to render: hidden cells dropped, show_doc inserted."
    nb = json.loads(path.read_text())
    if execute:  # outputs from a run; the cells themselves (with their directives) from the file
        done = execute_notebook(path)
        outs = {c.get('id'): c.get('outputs', []) for c in done['cells'] if c.get('cell_type') == 'code'}
        for c in nb['cells']:
            if c['cell_type'] == 'code': c['outputs'] = outs.get(c.get('id'), [])
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
        cells.append(dict(c, source=body, outputs=c.get('outputs', []) if execute else [], execution_count=None))
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


def stage(src_dir: Path, papers_run: list, execute=('01_results',)) -> list:
    "Write the pages into `src_dir`; returns the MkDocs nav."
    src_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(NBS/'index.ipynb', src_dir/'index.ipynb')
    nav = [{'Home': 'index.ipynb'}]
    api = []
    (src_dir/'api').mkdir()
    if (NBS/'images').is_dir(): shutil.copytree(NBS/'images', src_dir/'api'/'images')   # figures the chapters' markdown shows
    for p in sorted(NBS.glob('[0-9]*.ipynb')):
        run = execute == 'all' or p.stem in execute
        if run: print(f'executing {p.name} for its outputs', flush=True)
        module, nb = api_notebook(p, run)
        if module is None: continue
        (src_dir/'api'/f'{module}.ipynb').write_text(json.dumps(nb))
        api.append({f'{module}: {_title(nb, module)}': f'api/{module}.ipynb'})
    nav.append({'API': api})
    (src_dir/'papers').mkdir()
    papers = []
    have = {p.stem: p for p in PAPERS.glob('*.ipynb')}
    for name in [p for p in PAPER_ORDER if p in have] + sorted(set(have) - set(PAPER_ORDER)):
        found = [r/name/f'{name}.ipynb' for r in (papers_run or []) if (r/name/f'{name}.ipynb').exists()]
        executed = found[0] if found else None
        src = executed or have[name]
        shutil.copy(src, src_dir/'papers'/f'{name}.ipynb')
        for png in (src.parent.glob('*.png') if src is executed else []):
            shutil.copy(png, src_dir/'papers'/f'{name}_{png.name}')
        papers.append({_title(json.loads(src.read_text()), name).split(' — ')[0].split(':')[0]: f'papers/{name}.ipynb'})
    if papers: nav.append({'Papers': papers})
    return nav


def mkdocs_config(src_dir: Path, out: Path, nav: list) -> Path:
    cfg = dict(site_name='mixexperts', site_description='Model collaboration: routing, voting, merging',
               repo_url='https://github.com/mixexperts/mixexperts', docs_dir=str(src_dir), site_dir=str(out),
               use_directory_urls=False, nav=nav,
               theme={'name': 'material', 'features': ['navigation.sections', 'search.highlight']},
               plugins=['search', {'mkdocs-jupyter': {'include_source': False, 'execute': False, 'ignore_h1_titles': False,
                                                      'include_requirejs': False}}],
               markdown_extensions=['tables', 'admonition', 'pymdownx.superfences'])
    import yaml
    p = src_dir.parent/'mkdocs.yml'
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def build(out=ROOT/'_docs', papers_run=None, engine='auto', execute=('01_results',)) -> Path:
    out = Path(out).resolve()
    if not papers_run and (ROOT/'runs'/'reproduce').exists(): papers_run = [ROOT/'runs'/'reproduce']
    if isinstance(papers_run, (str, Path)): papers_run = [papers_run]
    papers_run = [Path(r).resolve() for r in papers_run or []]
    if engine == 'auto': engine = 'quarto' if shutil.which('quarto') else 'mkdocs'
    if engine == 'quarto':  # the nbdev route: process the notebooks, then render with Quarto
        env = dict(os.environ)
        subprocess.run([str(Path(sys.executable).parent/'nbdev_proc_nbs')], cwd=ROOT, check=True, env=env)
        (ROOT/'_proc'/'papers').mkdir(parents=True, exist_ok=True)
        for name, nb in {p.stem: p for p in PAPERS.glob('*.ipynb')}.items():
            runs = [r/name/f'{name}.ipynb' for r in papers_run if (r/name/f'{name}.ipynb').exists()]
            shutil.copy(runs[0] if runs else nb, ROOT/'_proc'/'papers'/f'{name}.ipynb')
        subprocess.run(['quarto', 'render', str(ROOT/'_proc'), '--output-dir', str(out)], cwd=ROOT, check=True)
        return out
    with tempfile.TemporaryDirectory() as tmp:
        src_dir = Path(tmp)/'docs'
        nav = stage(src_dir, papers_run, execute)
        cfg = mkdocs_config(src_dir, out, nav)
        if out.exists(): shutil.rmtree(out)
        subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--quiet', '-f', str(cfg)], cwd=tmp, check=True)
    print(f'docs built with {engine} in {out} (papers from {[str(r) for r in papers_run] or "papers/ (unexecuted)"})')
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('-o', '--out', default=str(ROOT/'_docs'), help='site folder (default _docs/)')
    p.add_argument('--papers-run', action='append', default=None, help='a `mixexperts reproduce` run folder with the executed paper notebooks (repeatable; first match wins)')
    p.add_argument('--engine', default='auto', choices=('auto', 'mkdocs', 'quarto'), help='auto: quarto when on PATH, else mkdocs')
    p.add_argument('--execute', default='01_results', help="module notebooks to execute for their outputs (figures): 'all', 'none' or names, comma-separated")
    a = p.parse_args(argv)
    ex = a.execute if a.execute == 'all' else () if a.execute == 'none' else tuple(x.strip() for x in a.execute.split(','))
    build(a.out, a.papers_run, a.engine, ex)


if __name__ == '__main__':
    main()
