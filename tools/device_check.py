"""GPU check of mixexperts on one lent GPU machine (see tools/device_check.sh for how the files travel there).

Four parts, each timed, on SmolLM2-135M-Instruct (the shipped GGUF, converted by the package's own `convert_gguf`):
  a. scoring: `HFBackend(dtype='auto')` (bf16 on a bf16 GPU) on the device against `HFBackend(dtype='float32')` on the CPU,
     lm-eval's 0-shot MMLU prompt (`tasks.mmlu_prompt`) with continuations " A".." D" on the questions of
     data/device/mmlu100.jsonl (the approach of benchmarks/loglik_vs_lmeval.py): the share of identical chosen options
     and max/mean |Δ loglik|. Tolerance (TOL below): max |Δ| ≤ 1.0 nat, mean |Δ| ≤ 0.25 nats (bf16 on CPU gave 0.55 / 0.16 on 8 questions), and a chosen option may
     differ only on a question whose fp32 margin between its two best options is below 2·max |Δ| (a near tie).
  b. sampling: k=5 samples for each of 20 prompts, 32 new tokens, one batched `generate` call (benchmarks/sampling.py).
  c. one LoRA training step: `backends.train_lora(steps=1)` on the device (3 such adapters, seeds 0..2, become the
     experts of d); checked: the saved lora_B factors are no longer zero.
  d. one population-search step with one resident base: `search.AdapterSlot` (one base model with a LoRA slot),
     Model Swarms' rule (`get_rule('swarm')`) over a population grown by `populate` from the 3 experts; the
     utility is MMLU accuracy on the slice's first questions, every particle evaluated before and after the step.
The last line printed is one JSON object with every figure and `ok` (all checks passed); `--out F` also writes it to F.

Modes:
  python tools/device_check.py [--device cuda|cpu] [--quick] [--model-dir DIR | --gguf-parts P1 P2 ...] [--data F]
  python tools/device_check.py --make-slice data/device/mmlu100.jsonl   # here: 100 MMLU questions from the shipped data
  python tools/device_check.py --prepare                                # here: GGUF parts, wheels, manifest
"""
import argparse, hashlib, json, os, shutil, sys, tempfile, time
from pathlib import Path

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('MIXEXPERTS_PROGRESS', 'off')
REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO/'tools'/'device_manifest.json'
PARTS_DIR = REPO/'.device'                      # git-ignored; carried to the device machine
WHEELS_DIR = REPO/'tools'/'device_wheels'       # git-ignored; carried to the device machine
WHEELS = ['fastcore==1.14.5', 'gguf==0.19.0']   # the pure-Python packages the device image lacks (KINDS.md's list)
MODEL = 'smollm2-135m-instruct'
TOL = dict(max_abs=1.0, mean_abs=0.25, near_tie=2.0)   # nats; near_tie × max |Δ| is the margin under which a flip is allowed


def sha256(p, chunk=1 << 22) -> str:
    h = hashlib.sha256()
    with open(p, 'rb') as f:
        while b := f.read(chunk): h.update(b)
    return h.hexdigest()


def weights_digest(folder) -> str:
    "sha256 over the tensors of model.safetensors (names sorted, values as float32): equal for equal weights whatever the file's metadata."
    import torch
    from safetensors.torch import load_file
    sd = load_file(str(Path(folder)/'model.safetensors'))
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode()); h.update(sd[k].to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- here: data slice, parts, wheels, manifest
def make_slice(out, n=100, seed=0):
    "The n MMLU questions (fixed draw, as benchmarks/loglik_vs_lmeval.py draws them) as a small JSONL file."
    import numpy as np
    from mixexperts.core import data_path
    from mixexperts.results import load_results
    rm = load_results(data_path('lm_eval', 'mmlu'), models=['Qwen__Qwen3-4B'], progress=False)
    pick = np.sort(np.random.default_rng(seed).choice(rm.n_questions, size=n, replace=False))
    q = rm.questions.iloc[pick]
    out = Path(out); out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, 'w', encoding='utf-8') as f:
        for r in q.itertuples():
            f.write(json.dumps(dict(subject=r.subject, question=r.question, choices=list(r.choices)[:r.n_choices],
                                    gold=int(r.gold)), ensure_ascii=False) + '\n')
    print(f"{out}: {n} questions, {out.stat().st_size:,} bytes")


def prepare(n_parts=2):
    "Split the shipped GGUF into parts (.device/), download the wheels (tools/device_wheels/), write the manifest."
    import subprocess
    from mixexperts.models import LOCAL_MODELS, gguf_path, resolve_model
    src = gguf_path(LOCAL_MODELS[MODEL])
    PARTS_DIR.mkdir(exist_ok=True)
    data = src.read_bytes()
    size = -(-len(data) // n_parts)
    parts = []
    for i in range(n_parts):
        p = PARTS_DIR/f'gguf.part{i + 1}'
        p.write_bytes(data[i * size:(i + 1) * size])
        parts.append(dict(name=p.name, bytes=p.stat().st_size, sha256=sha256(p)))
    folder = resolve_model(MODEL)
    man = dict(model=MODEL, gguf=src.name, gguf_sha256=sha256(src), gguf_bytes=len(data), parts=parts,
               files={p.name: sha256(p) for p in sorted(folder.iterdir()) if p.is_file()},
               weights_sha256=weights_digest(folder))
    MANIFEST.write_text(json.dumps(man, indent=1) + '\n')
    WHEELS_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', '--only-binary=:all:', '--python-version', '3.12',
                    '--implementation', 'py', '--platform', 'any', '-d', str(WHEELS_DIR), *WHEELS], check=True)
    names = ', '.join(f"{p['name']} ({p['bytes']:,} B)" for p in parts)
    print(f"parts: {names}; wheels: {sorted(x.name for x in WHEELS_DIR.iterdir())}; manifest {MANIFEST}")


# ---------------------------------------------------------------- there: the model folder
def model_from_parts(parts, work) -> Path:
    "Join the GGUF parts, check them and the whole against the manifest, convert with the package's convert_gguf."
    from mixexperts.models import convert_gguf
    man = json.loads(MANIFEST.read_text())
    want = {p['name']: p['sha256'] for p in man['parts']}
    for p in map(Path, parts):
        if want.get(p.name) != sha256(p): raise SystemExit(f"error: {p}: sha256 differs from {MANIFEST} (part damaged or from another GGUF)")
    if sorted(Path(p).name for p in parts) != sorted(want): raise SystemExit(f"error: need the parts {sorted(want)}, got {parts}")
    gguf = Path(work)/'gguf'/man['gguf']; gguf.parent.mkdir(parents=True, exist_ok=True)
    with open(gguf, 'wb') as f:
        for p in sorted(map(Path, parts), key=lambda p: p.name): f.write(p.read_bytes())
    if sha256(gguf) != man['gguf_sha256']: raise SystemExit(f"error: joined GGUF {gguf}: sha256 differs from the manifest")
    return convert_gguf(gguf, Path(work)/MODEL)


def check_model_dir(folder) -> dict:
    "The folder's weights (and tokenizer) against the manifest: the conversion here and there must be the same model."
    man = json.loads(MANIFEST.read_text())
    res = dict(weights_match=weights_digest(folder) == man['weights_sha256'],
               tokenizer_match=sha256(Path(folder)/'tokenizer.json') == man['files']['tokenizer.json'])
    if not all(res.values()): raise SystemExit(f"error: model folder {folder} differs from the manifest {MANIFEST}: {res}")
    return res


# ---------------------------------------------------------------- the four parts
def sync(device):
    import torch
    if device.startswith('cuda'): torch.cuda.synchronize()


def mmlu_requests(qs):
    from mixexperts.tasks import mmlu_prompt
    return [(mmlu_prompt(q['question'], q['choices'], q['subject']), f' {"ABCD"[i]}') for q in qs for i in range(len(q['choices']))]


def choice_lls(backend, qs, adapter=None):
    import numpy as np
    lls = [ll for ll, _ in backend.loglikelihood(mmlu_requests(qs), adapter=adapter)]
    out, i = [], 0
    for q in qs:
        k = len(q['choices']); out.append(np.array(lls[i:i + k])); i += k
    return out


def part_scoring(folder, qs, device, dev_dtype, bs):
    import numpy as np
    from mixexperts.backends import HFBackend
    ref = HFBackend(str(folder), dtype='float32', device='cpu', batch_size=bs)
    dev = HFBackend(str(folder), dtype=dev_dtype, device=device, batch_size=bs)
    dev.loglikelihood(mmlu_requests(qs[:2]))   # warm-up
    t = time.perf_counter(); ll_ref = choice_lls(ref, qs); t_ref = time.perf_counter() - t
    t = time.perf_counter(); ll_dev = choice_lls(dev, qs); sync(device); t_dev = time.perf_counter() - t
    diffs = np.concatenate([np.abs(a - b) for a, b in zip(ll_ref, ll_dev)])
    mx, mean = float(diffs.max()), float(diffs.mean())
    same = [int(a.argmax()) == int(b.argmax()) for a, b in zip(ll_ref, ll_dev)]
    margin = lambda a: float(np.sort(a)[-1] - np.sort(a)[-2])
    unexplained = [i for i, (s, a) in enumerate(zip(same, ll_ref)) if not s and margin(a) >= TOL['near_tie'] * mx]
    acc = lambda lls: float(np.mean([int(l.argmax()) == q['gold'] for l, q in zip(lls, qs)]))
    ok = mx <= TOL['max_abs'] and mean <= TOL['mean_abs'] and not unexplained
    return dev, dict(n_questions=len(qs), dtype=str(dev.model.dtype).replace('torch.', ''), same_choice=float(np.mean(same)),
                     max_abs_dloglik=round(mx, 5), mean_abs_dloglik=round(mean, 5), flips_not_near_tie=len(unexplained),
                     accuracy_fp32_cpu=acc(ll_ref), accuracy_device=acc(ll_dev), seconds_fp32_cpu=round(t_ref, 3),
                     seconds_device=round(t_dev, 3), tolerance=TOL, ok=bool(ok))


def part_sampling(dev, qs, device, k, n_prompts, max_tokens):
    prompts = [[{'role': 'user', 'content': q['question']}] for q in qs[:n_prompts]]
    dev.generate(prompts[:2], n=2, temperature=0.7, max_tokens=4, seed=0)   # warm-up
    t = time.perf_counter()
    res = dev.generate(prompts, n=k, temperature=0.7, max_tokens=max_tokens, seed=0)
    sync(device); secs = time.perf_counter() - t
    toks = sum(c.completion_tokens for r in res for c in r)
    ok = len(res) == len(prompts) and all(len(r) == k for r in res) and toks > 0
    return dict(k=k, n_prompts=len(prompts), max_tokens=max_tokens, seconds=round(secs, 3), tokens=toks,
                tokens_per_second=round(toks / secs, 1), samples_per_second=round(k * len(prompts) / secs, 2),
                distinct_samples_per_prompt=sum(len({c.text for c in r}) for r in res) / len(res), ok=bool(ok))


def lora_texts(qs):
    from mixexperts.tasks import mmlu_prompt
    return [mmlu_prompt(q['question'], q['choices'], q['subject']) + f" {'ABCD'[q['gold']]}" for q in qs]


def part_lora(folder, qs, device, work, n_experts=3):
    import torch
    from safetensors.torch import load_file
    from mixexperts.backends import train_lora
    outs, secs = [], []
    for s in range(n_experts):
        texts = lora_texts(qs[s::n_experts])
        t = time.perf_counter()
        outs.append(train_lora(str(folder), texts, Path(work)/f'expert{s}', r=4, alpha=8, steps=1, lr=1e-3, batch_size=4,
                               max_length=256, seed=s, dtype='auto', device=device))
        sync(device); secs.append(time.perf_counter() - t)
    sd = load_file(str(outs[0]/'adapter_model.safetensors'))
    moved = all(float(v.abs().max()) > 0 for k, v in sd.items() if 'lora_B' in k)
    return outs, dict(experts=n_experts, rank=4, seconds_first=round(secs[0], 3), seconds_each=[round(x, 3) for x in secs],
                      lora_tensors=len(sd), lora_B_moved=bool(moved), ok=bool(moved))


def part_search(folder, adapters, qs, device, n_particles, bs):
    import numpy as np, torch
    from mixexperts.params import LoraAdapter
    from mixexperts.search import populate, SearchState, get_rule, AdapterSlot
    ads = [LoraAdapter.load(p) for p in adapters]
    E = torch.stack([a.factors.flat(torch.float32) for a in ads])
    X, kids = populate(E, n_particles, seed=0)
    t0 = time.perf_counter()
    slot = AdapterSlot(ads[0], base=str(folder), device=device, dtype='auto', batch_size=bs)
    t_load = time.perf_counter() - t0
    def utilities(st):
        f = []
        for x in st.X:
            slot.load(x); lls = choice_lls(slot.backend, qs, adapter='candidate')
            f.append(float(np.mean([int(l.argmax()) == q['gold'] for l, q in zip(lls, qs)])))
        return f
    st = SearchState(X, E, [f'expert{i}' for i in range(len(ads))] + kids)
    t = time.perf_counter(); f0 = utilities(st); sync(device); t_eval0 = time.perf_counter() - t
    rule = get_rule('swarm'); rule.init_velocity(st, 0); st.first_utilities(f0)
    before = st.X.clone()
    t = time.perf_counter(); rule.step(st, seed=0, t=1, patience=10); t_step = time.perf_counter() - t
    t = time.perf_counter(); f1 = utilities(st); sync(device); t_eval1 = time.perf_counter() - t
    st.update_utilities(f1)
    moved = bool((st.X - before).abs().amax(1).gt(0).all())
    n_models = sum(1 for m in [slot.backend.model] if m is not None)
    ok = moved and st.g >= max(f0) and all(0 <= v <= 1 for v in f0 + f1)
    out = dict(particles=st.n, values_per_particle=int(X.shape[1]), questions=len(qs), resident_bases=n_models,
               base_load_seconds=round(t_load, 3), update_seconds=round(t_step, 5), eval_seconds=round(t_eval0 + t_eval1, 3),
               questions_per_second=round(2 * st.n * len(qs) / (t_eval0 + t_eval1), 1),
               utilities_before=f0, utilities_after=f1, global_best=st.g, all_moved=moved, ok=bool(ok))
    if device.startswith('cuda'): out['max_gpu_memory_gib'] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument('--device', default='cuda', help="cuda (default) or cpu (the CPU plays the GPU's part)")
    ap.add_argument('--cpu-dtype', default='float32', choices=['bfloat16', 'float32'], help="with --device cpu: the dtype on the 'device' side (bfloat16 is slow on CPU)")
    ap.add_argument('--model-dir', help='a transformers folder of SmolLM2-135M-Instruct (checked against the manifest)')
    ap.add_argument('--gguf-parts', nargs='+', help='the GGUF parts made by --prepare (joined, checked, converted)')
    ap.add_argument('--data', default=str(REPO/'data'/'device'/'mmlu100.jsonl'))
    ap.add_argument('--quick', action='store_true', help='fewer questions, prompts and particles (a test on CPU)')
    ap.add_argument('--batch-size', type=int, default=16)
    ap.add_argument('--out', help='also write the JSON object here')
    ap.add_argument('--make-slice', metavar='OUT', help='write the 100-question MMLU slice from the shipped data and stop')
    ap.add_argument('--prepare', action='store_true', help='here: GGUF parts into .device/, wheels, manifest; then stop')
    a = ap.parse_args()
    if a.make_slice: return make_slice(a.make_slice)
    if a.prepare: return prepare()

    t_all = time.perf_counter()
    import torch
    if a.device.startswith('cuda') and not torch.cuda.is_available(): raise SystemExit("error: --device cuda but torch sees no CUDA GPU (use --device cpu to rehearse)")
    torch.manual_seed(0)
    qs = [json.loads(l) for l in open(a.data, encoding='utf-8')]
    n_q, n_prompts, n_particles, n_util = (8, 4, 4, 4) if a.quick else (100, 20, 6, 20)
    work = Path(tempfile.mkdtemp(prefix='device-check-'))
    res = dict(device=a.device, quick=a.quick, torch=torch.__version__)
    import transformers; res['transformers'] = transformers.__version__
    if a.device.startswith('cuda'): res['gpu'] = torch.cuda.get_device_name(0)
    try:
        t = time.perf_counter()
        if a.gguf_parts: folder, res['model_source'] = model_from_parts(a.gguf_parts, work), 'gguf parts'
        elif a.model_dir: folder, res['model_source'] = Path(a.model_dir), 'model dir'
        else:
            from mixexperts.models import resolve_model
            folder, res['model_source'] = resolve_model(MODEL), 'package cache'
        res['model_check'] = check_model_dir(folder); res['model_seconds'] = round(time.perf_counter() - t, 3)
        dev_dtype = 'auto' if a.device.startswith('cuda') else a.cpu_dtype
        dev, res['scoring'] = part_scoring(folder, qs[:n_q], a.device, dev_dtype, a.batch_size)
        print('scoring', json.dumps(res['scoring']), flush=True)
        res['sampling'] = part_sampling(dev, qs, a.device, 5, n_prompts, 32)
        print('sampling', json.dumps(res['sampling']), flush=True)
        del dev
        adapters, res['lora'] = part_lora(folder, qs[n_util:], a.device, work)
        print('lora', json.dumps(res['lora']), flush=True)
        res['search'] = part_search(folder, adapters, qs[:n_util], a.device, n_particles, a.batch_size)
        print('search', json.dumps({k: v for k, v in res['search'].items() if 'utilities' not in k}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res['seconds'] = round(time.perf_counter() - t_all, 1)
    res['ok'] = all(res[k]['ok'] for k in ('scoring', 'sampling', 'lora', 'search'))
    line = json.dumps(res)
    if a.out: Path(a.out).write_text(line + '\n')
    print(line)
    return 0 if res['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
