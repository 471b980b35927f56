"""JupyterLab on the venv's kernel, driven through the browser as a person would.

Starts `jupyter lab` on 127.0.0.1 (random port and token, no browser of its own, config and workspaces in a temporary
folder), opens a copy of a chapter in headless Chromium (Debian's /usr/bin/chromium, driven by the `playwright`
package: no browser is downloaded), types a new cell holding a fresh random value, runs it with Shift+Enter on the
`mixexperts` kernel that `make install` registers (`ipykernel install --sys-prefix`), and finds the value in the page.
A second typed cell shows that `mixexperts.core.progress` draws a widget progress bar there.

Needs what `make install` (jupyterlab, playwright, the kernel) and `make chromium` set up; skipped, saying which is
missing, only when one of them is absent.
"""
import json, os, secrets, shutil, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
KERNEL = 'mixexperts'
DEADLINE = 240  # seconds for the whole test: it cannot hang CI


def _kernel_spec():
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    try: return KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel: return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5):
    with urllib.request.urlopen(url, timeout=timeout) as r: return r.status, r.read()


@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on loopback serving `tmp_path/work`; yields (base url, token, work folder)."
    pytest.importorskip('jupyterlab', reason='jupyterlab is not installed: `make install` (dev extra)')
    if not CHROMIUM: pytest.skip('chromium is not installed: `make chromium` (apt-get install -y chromium)')
    if _kernel_spec() is None: pytest.skip(f'no {KERNEL!r} Jupyter kernel: `make install` registers it (ipykernel install --sys-prefix)')
    work, home = tmp_path/'work', tmp_path/'jupyter'
    work.mkdir(); home.mkdir()
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home/'config'), JUPYTER_RUNTIME_DIR=str(home/'runtime'),
               JUPYTERLAB_SETTINGS_DIR=str(home/'settings'), JUPYTERLAB_WORKSPACES_DIR=str(home/'workspaces'),
               HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    log = open(tmp_path/'lab.log', 'w')
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={port}', '--ServerApp.port_retries=0',
           f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={work}', '--LabApp.news_url=',
           '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate', '--LabApp.extension_manager=readonly']
    if hasattr(os, 'geteuid') and os.geteuid() == 0: cmd.append('--allow-root')  # CI runs as root
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    try:
        t0 = time.time()
        while True:
            if proc.poll() is not None: pytest.fail(f'jupyter lab exited with {proc.returncode}:\n' + (tmp_path/'lab.log').read_text()[-3000:])
            try:
                if _get(f'{base}/api/status?token={token}')[0] == 200: break
            except OSError: pass
            if time.time() - t0 > 90: pytest.fail('jupyter lab did not answer within 90 s:\n' + (tmp_path/'lab.log').read_text()[-3000:])
            time.sleep(0.5)
        yield base, token, work
    finally:
        try:  # the server's own shutdown stops its kernels too
            req = urllib.request.Request(f'{base}/api/shutdown', method='POST', headers={'Authorization': f'token {token}'})
            urllib.request.urlopen(req, timeout=10).close()
        except OSError: pass
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group (start_new_session)
            try: proc.wait(timeout=10)
            except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait()
        log.close()
        assert proc.returncode is not None


def test_jupyter_lab_runs_a_typed_cell(lab, tmp_path):
    pw = pytest.importorskip('playwright.sync_api', reason='playwright is not installed: `make install` (dev extra)')
    base, token, work = lab
    nb = json.loads((ROOT/'nbs'/'00_core.ipynb').read_text())
    nb['metadata']['kernelspec'] = {'name': KERNEL, 'display_name': _kernel_spec().display_name, 'language': 'python'}
    (work/'core.ipynb').write_text(json.dumps(nb))
    value = secrets.randbelow(10**12) + 10**12  # fresh each run: only this run's kernel can print it
    deadline = time.time() + DEADLINE
    left = lambda: max(1000, int((deadline - time.time()) * 1000))  # ms for the next wait
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'])
        try:
            page = browser.new_page(viewport={'width': 1400, 'height': 900})
            page.goto(f'{base}/lab/tree/core.ipynb?token={token}', timeout=min(left(), 120_000))
            page.locator('.jp-Notebook .jp-Cell').first.wait_for(timeout=min(left(), 120_000))
            kernel = page.locator('.jp-NotebookPanel-toolbar .jp-KernelName, .jp-NotebookPanel-toolbar [data-jp-item-name="kernelName"]')
            kernel.first.wait_for(timeout=min(left(), 60_000))
            page.wait_for_function("() => { const e = document.querySelector('.jp-NotebookPanel-toolbar .jp-KernelName');"
                                   " return e && e.textContent.trim() && !/No Kernel|Unknown/.test(e.textContent); }", timeout=min(left(), 60_000))
            kernel_name = kernel.first.inner_text().strip()
            page.wait_for_function("() => { const e = document.querySelector('.jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator');"
                                   " return e && e.getAttribute('data-status') === 'idle'; }", timeout=min(left(), 120_000))
            page.locator('.jp-Notebook .jp-Cell .jp-InputPrompt').first.click()  # select the first cell
            page.keyboard.press('Escape')                     # command mode
            page.keyboard.press('b')                          # a new cell below it, then edit it
            page.keyboard.press('Enter')
            page.locator('.jp-Notebook.jp-mod-editMode').wait_for(timeout=min(left(), 30_000))
            page.keyboard.type(f'import sys; print({value}, sys.prefix)')
            page.keyboard.press('Shift+Enter')                # run it on the kernel
            out = page.locator('.jp-OutputArea-output', has_text=str(value))
            out.first.wait_for(timeout=min(left(), 120_000))
            text = out.first.inner_text()
            # mixexperts.core.progress draws a widget here (plain text in papermill, the chapter runner and the docs)
            page.keyboard.press('Escape'); page.keyboard.press('b'); page.keyboard.press('Enter')
            page.locator('.jp-Notebook.jp-mod-editMode').wait_for(timeout=min(left(), 30_000))
            page.keyboard.type("from mixexperts.core import progress; n = sum(1 for _ in progress(range(7), desc='bar'))")
            page.keyboard.press('Shift+Enter')
            bar = page.locator('.jp-OutputArea-output .widget-hprogress')
            bar.first.wait_for(timeout=min(left(), 60_000))
            page.locator('.jp-OutputArea-output', has_text='7/7').first.wait_for(timeout=min(left(), 60_000))
            warned = page.locator('.jp-OutputArea-output', has_text='IProgress').count()
            shot = tmp_path/'lab.png'
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert str(value) in text
    assert text.split()[-1] == str(Path(sys.prefix)), f'the cell ran on {text.split()[-1]}, not this venv ({sys.prefix})'
    assert warned == 0  # no TqdmWarning: ipywidgets is installed
    assert kernel_name == _kernel_spec().display_name, kernel_name  # the notebook runs on the kernel make install registered
