"""The docs site: built offline by `tools/build_docs.py`, served on loopback, loaded in headless Chromium.

Needs Debian's `chromium` (`apt-get install -y chromium`); skipped with that reason only when it is absent. The
checks that measure the rendered page (every chapter shows executed output; code stays within the page's width) drive
that same Chromium with the `playwright` package (dev extra; it downloads no browser).
Chapters: the executed notebooks of `tools/run_chapters.py` are reused from MIXEXPERTS_EXECUTED (`make test` sets it
to the `_executed/` folder its notebook test just wrote) or `_executed/`; build_docs runs the chapters missing or
changed there, so each chapter runs once per `make test`.
Set MIXEXPERTS_PAPERS_RUN to a `mixexperts reproduce` run folder to reuse its executed notebooks; otherwise the
test runs `reproduce slm_mux --profile smoke` first.
"""
import base64, functools, http.server, json, os, re, shutil, subprocess, sys, threading
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1', MPLBACKEND='Agg')
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    pytest.importorskip('mkdocs', reason='the docs engine is not installed: pip install mkdocs mkdocs-material mkdocs-jupyter (dev extra)')
    pytest.importorskip('mkdocs_jupyter', reason='pip install mkdocs-jupyter (dev extra)')
    tmp = tmp_path_factory.mktemp('docs')
    run = os.environ.get('MIXEXPERTS_PAPERS_RUN')
    if not run:
        run = tmp / 'run'
        r = subprocess.run([str(Path(sys.executable).parent / 'mixexperts'), 'reproduce', 'slm_mux', '--profile', 'smoke', '-o', str(run), '--quiet'],
                           capture_output=True, text=True, timeout=900, env=ENV)
        assert r.returncode == 0, r.stderr[-3000:]
    out = tmp / '_docs'
    executed = os.environ.get('MIXEXPERTS_EXECUTED') or (ROOT / '_executed' if (ROOT / '_executed').is_dir() else None)
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'build_docs.py'), '-o', str(out), '--papers-run', str(run), '--engine', 'mkdocs']
                       + (['--executed', str(executed)] if executed else []),
                       capture_output=True, text=True, timeout=2400, env=ENV, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope='module')
def server(site):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): REQUESTS.append(self.path)
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Handler, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()


REQUESTS = []  # paths the browser asked the loopback server for


def test_site_files(site):
    for page in ('index.html', 'api/results.html', 'api/reproduce.html', 'papers/slm_mux.html', 'search/search_index.json'):
        assert (site / page).exists(), page
    idx = (site / 'search' / 'search_index.json').read_text()
    assert 'cross_validate' in idx and 'MuxSimulation' in idx  # API names are searchable


def dom(url: str) -> str:
    if not CHROMIUM: pytest.skip('chromium is not installed (apt-get install -y chromium); the browser check needs it')
    r = subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
                        '--virtual-time-budget=5000', '--dump-dom', url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def png_images(html: str, base: str) -> list:
    "The PNG bytes of every <img> in a page: inline data URIs decoded, others fetched from the server."
    import urllib.request
    out = []
    for src in re.findall(r'<img[^>]*\ssrc="([^"]+)"', html):
        if src.startswith('data:image/png;base64,'): data = base64.b64decode(src.split(',', 1)[1])
        else: data = urllib.request.urlopen(urllib.parse.urljoin(base, src)).read()
        out.append(data)
    return [d for d in out if d[:8] == b'\x89PNG\r\n\x1a\n']


def test_home_page(server):
    html = dom(f'{server}/index.html')
    assert '<title>' in html and 'mixexperts' in html
    assert 'md-search' in html            # the theme's search box rendered
    assert any(p.startswith('/assets/javascripts/bundle') for p in REQUESTS)  # the browser ran the site's scripts
    assert '/search/search_index.json' in REQUESTS                            # and loaded the search index
    assert 'href="api/results.html"' in html and 'href="papers/slm_mux.html"' in html  # navigation to API and papers


def test_api_page_with_show_doc_and_figures(server):
    url = f'{server}/api/results.html'
    html = dom(url)
    assert 'load_results' in html and 'ResultsMatrix' in html
    assert re.search(r'<h3[^>]*>\s*load_results', html)              # show_doc heading
    assert '<em>Read lm-evaluation-harness samples into a question' in html  # show_doc's docstring line
    assert 'only these models (folder names)' in html                 # and the parameter comments (docments)
    assert len(png_images(html, url)) >= 1                             # the chapter's figures (executed for the docs)


def test_paper_page_with_figures_and_headline(server):
    url = f'{server}/papers/slm_mux.html'
    html = dom(url)
    assert 'SLM-MUX' in html and 'oracle' in html
    assert '0.792' in html or '79.2' in html                           # the paper's own number in the last table
    imgs = png_images(html, url)
    assert len(imgs) >= 2 and all(len(i) > 5000 for i in imgs)        # seaborn figures, not placeholders


def chapter_pages() -> dict:
    "API page (api/<module>.html) → chapter notebook, for every nbs/NN_*.ipynb with `#| default_exp`."
    out = {}
    for p in sorted((ROOT / 'nbs').glob('[0-9]*.ipynb')):
        for c in json.loads(p.read_text())['cells']:
            m = re.search(r'^\s*#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M) if c['cell_type'] == 'code' else None
            if m: out[f'api/{m.group(1)}.html'] = p.name; break
    return out


@pytest.fixture(scope='module')
def browser():
    "Debian's Chromium driven by playwright: pages are measured as rendered, scripts and CSS applied."
    if not CHROMIUM: pytest.skip('chromium is not installed (apt-get install -y chromium); the browser check needs it')
    pw = pytest.importorskip('playwright.sync_api', reason='playwright is not installed: `make install` (dev extra)')
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'])
        try: yield b
        finally: b.close()


def _page(browser, url: str):
    page = browser.new_page(viewport={'width': 1280, 'height': 900})
    page.set_default_timeout(60_000)
    r = page.goto(url, wait_until='load')
    assert r is not None and r.ok, f'{url}: {r.status if r else "no response"}'
    return page


_OUTPUTS_JS = """() => {
  const outs = [...document.querySelectorAll('.jupyter-wrapper .jp-OutputArea-output')]
    .filter(e => e.innerText.trim() || e.querySelector('img, svg, table'));
  const runs = [...document.querySelectorAll('.jupyter-wrapper .jp-InputPrompt')].filter(e => /In\\s*\\[\\d+\\]/.test(e.innerText));
  return {outputs: outs.length, text: outs.map(e => e.innerText.trim()).filter(t => t).length, executed: runs.length};
}"""


_WIDTH_JS = """() => {
  const content = document.querySelector('.md-content').getBoundingClientRect();
  const over = [], wrapped = [];
  for (const el of document.querySelectorAll('.jupyter-wrapper pre, .md-typeset pre')) {
    if (!el.offsetParent) continue;  // not displayed
    const r = el.getBoundingClientRect(), boxes = [el, el.parentElement, ...el.children];  // the pre, its frame, its <code>
    if (boxes.some(b => b.scrollWidth > b.clientWidth + 1) || r.right > content.right + 1)
      over.push(el.textContent.trim().split('\\n')[0].slice(0, 80));
    const c = el.cloneNode(true);  // the same text unwrapped: would it have run past the right edge?
    c.style.whiteSpace = 'pre'; c.style.overflowWrap = 'normal'; c.style.overflowX = 'visible';
    el.parentNode.appendChild(c);
    if (c.scrollWidth > el.clientWidth + 1) wrapped.push(el.textContent.trim().split('\\n')[0].slice(0, 80));
    c.remove();
  }
  return {over, wrapped, page: document.documentElement.scrollWidth - window.innerWidth};
}"""


@pytest.fixture(scope='module')
def chapter_pages_rendered(server, browser):
    "Every chapter's API page loaded once in Chromium: {page: (notebook, output counts, width measures)}."
    pages = chapter_pages()
    assert len(pages) >= 10, pages
    got = {}
    for path, nb in pages.items():
        page = _page(browser, f'{server}/{path}')
        try: got[path] = (nb, page.evaluate(_OUTPUTS_JS), page.evaluate(_WIDTH_JS))
        finally: page.close()
    return got


def test_every_chapter_page_shows_executed_output(chapter_pages_rendered):
    missing = {f'{path} ({nb})': outs for path, (nb, outs, _) in chapter_pages_rendered.items()
               if not (outs['outputs'] >= 1 and outs['text'] >= 1 and outs['executed'] >= 1)}
    assert not missing, f'chapter pages without executed output: {missing}'





def test_code_stays_within_the_page_width(chapter_pages_rendered):
    over = {path: w for path, (_, _, w) in chapter_pages_rendered.items() if w['over'] or w['page'] > 0}
    assert not over, f'code or output running past the right edge: {over}'
    wrapped = sum(len(w['wrapped']) for _, _, w in chapter_pages_rendered.values())
    assert wrapped >= 5  # the check is not vacuous: long lines exist, and they wrap instead of being cut off


def test_paper_pages_hold_no_tqdm_warning(server, site, browser):
    papers = sorted(p.relative_to(site).as_posix() for p in (site / 'papers').glob('*.html'))
    assert 'papers/slm_mux.html' in papers
    bad = {}
    for path in papers:
        page = _page(browser, f'{server}/{path}')
        try: text = page.inner_text('body')
        finally: page.close()
        hits = [w for w in ('TqdmWarning', 'IProgress', 'HBox(children', 'FloatProgress') if w in text]
        if hits: bad[path] = hits
    assert not bad, f'paper pages showing progress-bar failures: {bad}'
