"""The module graph of `mixexperts`: print it, and fail on a cycle, an import from a higher layer, a private name
imported across modules, or a module the layer table does not place.

Usage: python tools/import_graph.py [--dot]      (exit code 1 on any violation; --dot prints Graphviz instead)

Every `import` and `from … import` of a `mixexperts` module counts, at module level or inside a function: a lower
layer never imports a higher one, not even lazily. Modules of the same layer may import each other as long as
the graph stays acyclic.
"""
import ast, sys
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / 'mixexperts'

# lowest first; a module may import its own layer and the layers below
LAYERS = [
    ('core', ['core', 'stats']),
    ('data and text', ['results', 'extract', 'tasks', 'models', 'hubstub', 'embeddings']),
    ('engines and parameters', ['backends', 'remote', 'params']),
    ('methods', ['routers', 'orchestrator', 'guarded', 'voting', 'merging']),
    ('method runs', ['routing_eval', 'routed', 'mux_sim', 'mux_live', 'experts', 'search']),
    ('scale', ['pool', 'pool.*', 'pool_*']),
    ('entry points', ['lmeval', 'serve', 'rehearsal', 'reproduce', 'commands', 'commands.*', 'cli']),
]
IGNORE = {'__init__', '_modidx'}


def modules() -> dict:
    "{dotted name below mixexperts: path} of every module of the package."
    out = {}
    for p in sorted(PKG.rglob('*.py')):
        rel = p.relative_to(PKG).with_suffix('')
        name = '.'.join(rel.parts)
        if rel.name == '__init__': name = '.'.join(rel.parts[:-1])
        if name and name not in IGNORE and rel.name != '_modidx': out[name] = p
    return out


def layer_of(name: str) -> int | None:
    for i, (_, pats) in enumerate(LAYERS):
        if any(fnmatch(name, p) for p in pats): return i
    return None


def imports(name: str, path: Path, known: set) -> list:
    "[(imported module, private names, line)] for every import of a package module in the file."
    tree = ast.parse(path.read_text(encoding='utf-8'), str(path))
    pkg_parts = name.split('.')[:-1] if path.name != '__init__.py' else name.split('.')
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith('mixexperts.'):
                    out.append((a.name[len('mixexperts.'):], [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:   # relative: resolve against the package of this module
                base = pkg_parts[:len(pkg_parts) - (node.level - 1)] if node.level > 1 else pkg_parts
                mod = '.'.join([*base, *(node.module.split('.') if node.module else [])])
            elif node.module and (node.module == 'mixexperts' or node.module.startswith('mixexperts.')):
                mod = node.module[len('mixexperts.'):] if node.module != 'mixexperts' else ''
            else: continue
            names = [a.name for a in node.names]
            if not mod:   # `from mixexperts import x`: x may be a module or a package attribute
                for n in names:
                    if n in known: out.append((n, [], node.lineno))
                continue
            private = [n for n in names if n.startswith('_') and not n.startswith('__')]
            out.append((mod, private, node.lineno))
    return [(m, p, l) for m, p, l in out if m in known]


def find_cycle(graph: dict) -> list | None:
    "One cycle of the graph as a list of modules, or None."
    state, stack = {}, []
    def visit(n):
        state[n] = 1; stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1: return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c: return c
        stack.pop(); state[n] = 2
        return None
    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c: return c
    return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mods = modules()
    graph, problems = {}, []
    for name, path in mods.items():
        li = layer_of(name)
        if li is None: problems.append(f"{name}: not in the layer table of tools/import_graph.py")
        graph[name] = set()
        for dep, private, line in imports(name, path, set(mods)):
            if dep == name: continue
            graph[name].add(dep)
            rel = path.relative_to(ROOT)
            if private: problems.append(f"{rel}:{line}: imports private name(s) {private} from {dep}")
            ld = layer_of(dep)
            if li is not None and ld is not None and ld > li:
                problems.append(f"{rel}:{line}: {name} ({LAYERS[li][0]}) imports {dep}, a higher layer ({LAYERS[ld][0]})")
    cycle = find_cycle(graph)
    if cycle: problems.append('import cycle: ' + ' → '.join(cycle))
    if '--dot' in argv:
        print('digraph mixexperts {'); print('  rankdir=BT;')
        for n, deps in sorted(graph.items()):
            for d in sorted(deps): print(f'  "{n}" -> "{d}";')
        print('}')
    else:
        for i, (title, _) in enumerate(LAYERS):
            members = [n for n in mods if layer_of(n) == i]
            if not members: continue
            print(f"{i} {title}")
            for n in members: print(f"    {n:<22} → {', '.join(sorted(graph[n])) or '—'}")
    if problems:
        print(f"\n{len(problems)} problem(s):", *problems, sep='\n  ', file=sys.stderr)
        return 1
    print(f"\n{len(mods)} modules, {sum(map(len, graph.values()))} imports: no cycle, no upward import, no private import")
    return 0


if __name__ == '__main__':
    sys.exit(main())
