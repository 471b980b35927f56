"""Fail if `nbdev_export` or `nbdev_clean` would change the tree: notebooks and exported modules must agree."""
import hashlib, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WATCH = ['nbs', 'mixexperts', 'papers', 'pyproject.toml']


def snapshot():
    files = {}
    for w in WATCH:
        p = ROOT / w
        for f in ([p] if p.is_file() else sorted(p.rglob('*')) if p.exists() else []):
            if f.is_file() and '__pycache__' not in f.parts and '.ipynb_checkpoints' not in f.parts:
                files[str(f.relative_to(ROOT))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return files


def main():
    before = snapshot()
    for cmd in (['nbdev_export'], ['nbdev_clean'], *([['nbdev_clean', '--fname', 'papers']] if (ROOT / 'papers').exists() and any((ROOT / 'papers').glob('*.ipynb')) else [])):
        subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=ROOT, check=True)
    after = snapshot()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        print('nbdev_export / nbdev_clean changed these files; run them and commit the result:', *changed, sep='\n  ')
        sys.exit(1)
    print(f'notebooks and modules in sync ({len(after)} files checked)')


if __name__ == '__main__':
    main()
