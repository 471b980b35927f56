"""The docs site: built offline by `tools/build_docs.py`, served on loopback, loaded in headless Chromium.

Needs Debian's `chromium` (`apt-get install -y chromium`); skipped with that reason only when it is absent.
Set MIXEXPERTS_PAPERS_RUN to a `mixexperts reproduce` run folder to reuse its executed notebooks; otherwise the
test runs `reproduce slm_mux --profile smoke` first.
"""
import base64, functools, http.server, os, re, shutil, subprocess, sys, threading
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
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'build_docs.py'), '-o', str(out), '--papers-run', str(run), '--engine', 'mkdocs'],
                       capture_output=True, text=True, timeout=900, env=ENV, cwd=ROOT)
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
