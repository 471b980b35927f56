"""`mixexperts route train | eval | predict` through the real entry point, on a small lm-eval folder of real ARC outputs."""
import json
import pytest

from mixexperts.cli import run_captured


def route_main(*args):
    "Run `mixexperts route ...` in-process: (exit code, stdout, stderr)."
    return run_captured(list(args))


def test_cli_eval_json_on_an_lm_eval_folder(arc_run, tmp_path_factory):
    cfg = tmp_path_factory.mktemp('cfg') / 'routing.yaml'
    cfg.write_text('routers:\n  best_single: best_single\n  oracle: oracle\n  knn: {router: knn, k: 5, tau: 0.0}\n'
                   '  cost_aware: {router: cost_aware, base: {router: knn, k: 5, tau: 0.0}}\nfolds: 4\n')
    code, out, err = route_main('route', 'eval', arc_run, '--config', cfg, '--json')
    assert code == 0, err
    j = json.loads(out)
    assert (j['n_questions'], j['n_test'], j['n_models'], j['folds']) == (40, 40, 3, 4)
    assert list(j['routers']) == ['guarded', 'best_single', 'oracle', 'knn', 'cost_aware'] and j['router'] == 'guarded'   # the default router first
    assert {'best_single_accuracy', 'oracle_accuracy', 'accuracy', 'routers'} <= set(j)
    assert all({'accuracy', 'cost_fraction'} <= set(v) for v in j['routers'].values())
    assert j['routers']['oracle']['accuracy'] == pytest.approx(j['oracle_accuracy'])


def test_cli_train_predict_and_errors(arc_run, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('routers')  # not inside the lm-eval folder, where it would look like a model
    assert route_main('route', 'train', arc_run, '--router', 'knn', '--param', 'k=5', '--param', 'tau=0', '-o', tmp_path / 'r')[0] == 0
    code, out, err = route_main('route', 'predict', tmp_path / 'r', '--text', 'Which gas do plants absorb?')
    assert code == 0 and json.loads(out)['selected_model'] in json.loads((tmp_path / 'r' / 'router.json').read_text())['models']
    code, out, err = route_main('route', 'predict', tmp_path / 'r', '--text', '')
    assert code == 2 and 'empty query text' in err
    code, out, err = route_main('route', 'eval', arc_run, '--routers', 'knn,psychic')
    assert code == 2 and "unknown router 'psychic'" in err
    cfg = tmp_path / 'cfg.yaml'
    cfg.write_text('costs: {openai__gpt-9: 1000}\n')
    code, out, err = route_main('route', 'eval', arc_run, '--config', cfg)
    assert code == 2 and "name model(s) ['openai__gpt-9']" in err
    cfg.write_text('models: [Qwen__Qwen3-4B, openai__gpt-9]\n')
    code, out, err = route_main('route', 'eval', arc_run, '--config', cfg)
    assert code == 2 and 'openai__gpt-9' in err
    cfg.write_text('routerz: [knn]\n')
    code, out, err = route_main('route', 'eval', arc_run, '--config', cfg)
    assert code == 2 and "config key 'routerz' is not supported" in err and 'cfg' in err
