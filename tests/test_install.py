"""The `gpu` and `cluster` extras resolve together with the package for a fresh CUDA box (Linux x86_64, Python 3.12).

Metadata only: `uv pip compile` resolves `setup.py` with its extras for another platform and installs nothing. It is the
cheap equivalent of `pip install --dry-run --only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.12
".[gpu]"`: pip 23.2 backtracks for more than 8 minutes on this resolution and pip 26.3 needs 70-90 s (and a wheel of every
sdist-only dependency), uv about 20 s. Skipped, with the reason, when PyPI cannot be reached.
"""
import os, re, shutil, subprocess, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _uv() -> str | None:
    "The uv binary (the `uv` package of the dev extra, or one on PATH)."
    try:
        from uv import find_uv_bin
        return find_uv_bin()
    except (ImportError, FileNotFoundError): return shutil.which('uv')


def _pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen('https://pypi.org/simple/vllm/', timeout=10) as r: return r.status == 200
    except OSError: return False


def resolve_extras(extras: list, platform: str = 'x86_64-manylinux_2_28', python: str = '3.12', timeout: int = 240) -> dict:
    "{package: version} that installing the package with `extras` brings on `platform` (raises AssertionError on a conflict)."
    uv = _uv()
    if uv is None: pytest.skip('uv is not installed (it comes with the dev extra: pip install -e ".[dev]")')
    if not _pypi_reachable(): pytest.skip('PyPI is unreachable: cannot resolve the extras here')
    cmd = [uv, 'pip', 'compile', '--no-config', '--no-python-downloads', '--no-header', '--no-annotate', '--python-version', python,
           '--python-platform', platform, '--index-url', 'https://pypi.org/simple', 'setup.py']
    for e in extras: cmd += ['--extra', e]
    env = {k: v for k, v in os.environ.items() if not k.startswith(('PIP_', 'UV_'))}
    try: r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired: pytest.fail(f'resolving {extras} took more than {timeout} s')
    if r.returncode != 0 and re.search(r'(?i)connect|dns|network|timed out', r.stderr) and 'No solution found' not in r.stderr:
        pytest.skip(f'PyPI went away while resolving: {r.stderr.strip().splitlines()[-1]}')
    assert r.returncode == 0, f'`pip install "mixexperts[{",".join(extras)}]"` does not resolve on {platform}:\n{r.stderr[-3000:]}'
    return dict(re.findall(r'^([A-Za-z0-9_.-]+)==(\S+)', r.stdout, re.M))


def _version(v: str) -> tuple: return tuple(int(x) for x in re.findall(r'\d+', v)[:3])


def test_pool_gpu_extra_resolves():
    "vLLM, torch, transformers and Ray resolve together with every requirement of the package."
    got = resolve_extras(['gpu', 'cluster'])
    for pkg in ('vllm', 'torch', 'transformers', 'ray', 'lm-eval', 'peft'): assert pkg in got, f'{pkg} missing from the resolution'
    assert (0, 28) <= _version(got['vllm']) < (0, 33)             # the range settings.ini pins
    assert _version(got['torch']) >= (2, 4) and _version(got['transformers']) >= (4, 56)
    print({k: got[k] for k in ('vllm', 'torch', 'transformers', 'ray')})   # what README's "GPU install" states
