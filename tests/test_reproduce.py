"""`mixexperts reproduce`: the paper notebooks end to end with the CI-sized `smoke` profile, and its failure modes."""
import json, math, os, subprocess, sys
from pathlib import Path
import pytest

EXE = str(Path(sys.executable).parent / 'mixexperts')
ENV = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1', MPLBACKEND='Agg')


def mx(*args, timeout=1200):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('repro') / 'smoke'
    r = mx('reproduce', 'all', '--profile', 'smoke', '-o', out)
    return out, r


def test_smoke_all_papers(smoke_run):
    out, r = smoke_run
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / 'summary.json').read_text())
    assert s['ok'] and s['profile'] == 'smoke'
    assert {'mom', 'bench_coe', 'slm_mux'} <= set(s['papers'])
    for rec in s['records']:
        assert rec['status'] == 'ok', rec
        nb = Path(rec['notebook'])
        assert nb.exists() and nb.parent == out / rec['paper']
        head = json.loads((nb.parent / 'headline.json').read_text())
        assert head['paper'] == rec['paper'] and head['profile'] == 'smoke'
        assert head['headline'] and all(h['ours'] is None or math.isfinite(h['ours']) for h in head['headline'])
        assert any(h['ours'] is not None for h in head['headline'])
        if rec['paper'] != 'bwr':  # BWR's source publishes no numbers
            assert any(h['paper'] is not None for h in head['headline'])  # the paper's own number sits next to ours
        assert list(nb.parent.glob('*.png')) and list(nb.parent.glob('*.csv')) and list(nb.parent.glob('*.json'))
    md = (out / 'summary.md').read_text()
    assert '| paper | status |' in md and '| mom | ok |' in md
    assert 'papermill' in json.loads((out / 'mom' / 'mom.ipynb').read_text())['metadata']  # executed by papermill


def test_refuses_to_overwrite(smoke_run):
    out, _ = smoke_run
    r = mx('reproduce', 'mom', '--profile', 'smoke', '-o', out)
    assert r.returncode == 2 and 'exists and is not empty' in r.stderr and '--force' in r.stderr


def test_bad_profile(tmp_path):
    r = mx('reproduce', 'all', '--profile', 'laptop', '-o', tmp_path / 'x')
    assert r.returncode == 2 and "invalid choice: 'laptop'" in r.stderr
    from mixexperts.core import MixExpertsError
    from mixexperts.reproduce import reproduce
    with pytest.raises(MixExpertsError, match="unknown profile 'laptop'"): reproduce('mom', 'laptop', tmp_path / 'y')
    assert not (tmp_path / 'y').exists()


def test_unknown_paper(tmp_path):
    r = mx('reproduce', 'alphafold', '--profile', 'smoke', '-o', tmp_path / 'x')
    assert r.returncode == 2 and "no paper notebook for ['alphafold']" in r.stderr


def test_failing_notebook_is_named_with_its_cell(tmp_path):
    # missing data: the notebook's validation cell (right after the parameters) stops it with a clear error
    r = mx('reproduce', 'mom,slm_mux', '--profile', 'smoke', '-o', tmp_path / 'run', '--param', 'data="/nonexistent/data"')
    assert r.returncode == 2
    assert 'mom.ipynb failed at cell' in r.stderr and 'slm_mux.ipynb failed at cell' in r.stderr
    assert 'DataNotFoundError' in r.stderr and '/nonexistent/data' in r.stderr
    s = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    assert not s['ok'] and [x['status'] for x in s['records']] == ['failed', 'failed']
    assert '## Failures' in (tmp_path / 'run' / 'summary.md').read_text()
