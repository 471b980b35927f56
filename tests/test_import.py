"""Every exported module imports on its own (catches notebook test code that slipped into an export cell)."""
import importlib, pkgutil
import pytest
import mixexperts

MODULES = sorted(m.name for m in pkgutil.iter_modules(mixexperts.__path__) if not m.name.startswith('_'))


@pytest.mark.parametrize('name', MODULES)
def test_module_imports(name):
    importlib.import_module(f'mixexperts.{name}')


def test_all_names_exist():
    for name in MODULES:
        mod = importlib.import_module(f'mixexperts.{name}')
        missing = [n for n in getattr(mod, '__all__', []) if not hasattr(mod, n)]
        assert not missing, f'{name}.__all__ names missing objects: {missing}'
