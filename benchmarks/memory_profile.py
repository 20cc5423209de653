"""Peak resident memory of each phase of `lawtune demo`, and what holds it.

    flock /tmp/lawtune-heavy.lock .venv/bin/python benchmarks/memory_profile.py                 # the default model
    .venv/bin/python benchmarks/memory_profile.py --steps 2 --questions 4 --new-tokens 16 --mcq-limit 4
    .venv/bin/python benchmarks/memory_profile.py --model DIR --phases load loss mcq               # a few phases
    .venv/bin/python benchmarks/memory_profile.py --json out/memory.json
    .venv/bin/python benchmarks/memory_profile.py --phases prepare import train --steps 3 --timeline   # as a fresh demo
    .venv/bin/python benchmarks/memory_profile.py --phases compare --run out/demo/run --timeline    # a trained run
    .venv/bin/python benchmarks/memory_profile.py --phases prepare train --steps 3 --default-heap  # glibc untouched

One process runs the demo's phases in its order (prepare the demo's data, its training file with the RAG-format
rows included, train a few steps of configs/demo.yaml — the longest batch comes first, so even 2 steps meet
training's peak — load the base model, then on the held-out questions: generation, eval loss, MCQ scoring, each on the base model,
and last the whole `compare`, which loads both models in turn), each phase with its own peak (the kernel's
high-water mark, reset when the phase starts: `lawtune.memory.Phases`). Per phase it prints the RSS when the
phase began, its peak, the RSS it left, the peak above its start (what the phase itself allocated at once) and
what is alive afterwards: the parameters of the model in hand, and training's reused head buffers
(training/vocab_loss.py). With `--explain` each phase also runs under torch's profiler, which names the
operators that allocated the most memory (slower; its own bookkeeping adds a little RSS).

With `--timeline` the train phase's RSS is sampled every 5 ms on a thread, each sample tagged with the part
of a step running (the layers' forward, the fused loss head, the backward — which recomputes the checkpointed
layers —, the dev evaluation; "train" alone is the rest: data, optimizer, callbacks), and it prints each part's peak split
into anonymous memory (tensors, the heap) and file-backed pages (the memory-mapped weights, the libraries'
code): where in a step the phase's peak is made. The `import` phase imports the default model into a fresh
LAWTUNE_HOME (OUT/home) in this process first, as `lawtune demo` does on a fresh machine; without it the
model must already be imported. The compare phase is sampled the same way (load, generation, eval loss, MCQ;
its "step" is the model: 1 base, 2 tuned). Each phase also counts the minor page faults it took: memory handed
back to the OS is faulted in (zeroed) again when reused, which is what `lawtune.memory.tune_heap` (set here as in
the `lawtune` command, unless `--default-heap`) costs.

Unlike the demo it keeps the base model loaded across generation / loss / MCQ, so those three phases show
their own transient memory on top of one model. Reads only local files.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

PHASES = ("prepare", "import", "load", "train", "generation", "loss", "mcq", "compare")


def tensor_mib(tensors) -> float:
    """MiB of distinct storages among `tensors` (tied weights counted once)."""
    seen, total = set(), 0
    for tensor in tensors:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total / 2**20


def held(model) -> dict[str, float]:
    """What lives on after a phase: the model's parameters and buffers, and training's head workspace."""
    from lawtune.training import vocab_loss

    workspace = tensor_mib(vocab_loss._WORKSPACE.buffers.values())
    copies = tensor_mib([t for entry in vocab_loss._BF16_COPIES.values() for t in (entry[0], entry[2])])
    return {"model_mib": round(tensor_mib(list(model.parameters()) + list(model.buffers())) if model is not None else 0),
            "head_buffers_mib": round(workspace + copies)}


def explain(profile, top: int = 4) -> list[str]:
    """The operators that allocated the most CPU memory in one call (their largest single allocation)."""
    rows = [e for e in profile.key_averages() if e.cpu_memory_usage > 0]
    rows.sort(key=lambda e: -e.cpu_memory_usage / max(e.count, 1))
    return [f"{e.key} {e.cpu_memory_usage / max(e.count, 1) / 2**20:,.0f} MiB/call × {e.count}" for e in rows[:top]]


class Timeline:
    """The RSS sampled every `interval` seconds on a thread (/proc/self/statm), each sample tagged with the part
    of the work running (`with timeline.tag("head"): ...`); keeps each part's highest sample."""

    def __init__(self, interval: float = 0.005) -> None:
        import threading

        self.interval, self.part, self.step = interval, "", 0
        self.peaks: dict[str, tuple[float, float, float, int]] = {}  # part -> (rss, anon, file MiB, step)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def sample() -> tuple[float, float] | None:
        """(anonymous, file-backed) resident MiB now: statm's resident minus shared, and shared."""
        import resource

        try:
            with open("/proc/self/statm") as handle:
                resident, shared = (int(v) for v in handle.read().split()[1:3])
        except (OSError, ValueError):
            return None
        page = resource.getpagesize() / 2**20
        return (resident - shared) * page, shared * page

    def _record(self) -> None:
        now = self.sample()
        if now is None:
            return
        anon, file = now
        best = self.peaks.get(self.part)
        if best is None or anon + file > best[0]:
            self.peaks[self.part] = (anon + file, anon, file, self.step)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._record()

    def __enter__(self) -> "Timeline":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def tag(self, part: str):
        import contextlib

        @contextlib.contextmanager
        def tagged():
            before = self.part
            self.part = f"{before} > {part}" if before else part  # nested: "forward > head"
            self._record()
            try:
                yield
            finally:
                self._record()
                self.part = before

        return tagged()

    def lines(self) -> list[str]:
        rows = sorted(self.peaks.items(), key=lambda item: -item[1][0])
        return [f"  {part or 'outside':<40} peak {rss:>7,.0f} MiB = anonymous {anon:>7,.0f} + file-backed {file:>7,.0f} (step {step})"
                for part, (rss, anon, file, step) in rows]


def watch_training(timeline: Timeline):
    """Tag the parts of a training step for `timeline` (patches that last while the returned context is open)."""
    import contextlib

    import torch
    from transformers import Trainer, TrainerCallback

    from lawtune.training import loss as loss_module

    def wrap(owner, name, part):
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            with timeline.tag(part):
                return original(*args, **kwargs)

        return original, wrapped

    class StepCount(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            timeline.step = state.global_step + 1

    @contextlib.contextmanager
    def patched():
        targets = [(loss_module, "linear_cross_entropy", "head"),  # the fused loss head (its gradient too)
                   (loss_module.SFTTrainer, "compute_loss", "forward"),
                   (torch.autograd, "backward", "backward"),  # recomputes the checkpointed layers
                   (Trainer, "evaluate", "dev eval")]
        saved = []
        for owner, name, part in targets:
            original, wrapped = wrap(owner, name, part)
            saved.append((owner, name, original))
            setattr(owner, name, wrapped)
        original_init = Trainer.__init__

        def init(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            self.add_callback(StepCount())

        Trainer.__init__ = init
        try:
            with timeline.tag("train"):  # alone: data, optimizer, callbacks
                yield
        finally:
            Trainer.__init__ = original_init
            for owner, name, original in saved:
                setattr(owner, name, original)

    return patched()


def watch_compare(timeline: Timeline):
    """Tag the parts of `compare` for `timeline`: loading a model, generation, eval loss, MCQ scoring."""
    import contextlib

    from lawtune.evaluation import evaluate
    from lawtune.modeling import loading

    @contextlib.contextmanager
    def patched():
        targets = [(loading, "load_model", "load"), (evaluate, "generate", "generation"),
                   (evaluate, "eval_loss", "loss"), (evaluate, "_mcq", "mcq")]
        saved = [(owner, name, getattr(owner, name)) for owner, name, _ in targets]
        for (owner, name, original), (_, _, part) in zip(saved, targets):
            def wrapped(*args, _original=original, _part=part, **kwargs):
                if _part == "load":
                    timeline.step += 1  # in compare the "step" is the model: 1 base, 2 tuned
                with timeline.tag(_part):
                    return _original(*args, **kwargs)

            setattr(owner, name, wrapped)
        try:
            with timeline.tag("compare"):  # alone: reading data, the report, between the models
                yield
        finally:
            for owner, name, original in saved:
                setattr(owner, name, original)

    return patched()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="imported model name or HF folder")
    parser.add_argument("--steps", type=int, default=3, help="training steps (one dev evaluation at the end)")
    parser.add_argument("--questions", type=int, default=8, help="held-out test questions")
    parser.add_argument("--new-tokens", type=int, default=32, help="answer budget of the generation phases")
    parser.add_argument("--mcq-limit", type=int, default=16, help="questions per bundled MCQ set")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=[p for p in PHASES if p != "import"],
                        help="default: all but import (which dequantizes the GGUF again into OUT/home, ~1.5 min)")
    parser.add_argument("--explain", action="store_true", help="name the operators that allocated most (torch profiler)")
    parser.add_argument("--timeline", action="store_true", help="sample the train and compare phases' RSS and say in which part they peaked")
    parser.add_argument("--run", type=Path, default=None, help="a trained run folder for the compare phase (instead of the train phase's)")
    parser.add_argument("--default-heap", action="store_true", help="leave glibc's allocator as it is even when "
                        "LAWTUNE_MMAP_THRESHOLD_MIB asks to set its mmap threshold (lawtune.memory.tune_heap)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    args = parser.parse_args()

    import torch, transformers  # noqa: E401,F401  (the libraries load before any phase: start-up is no phase)

    from lawtune.memory import Phases, release_memory, rss_mib, tune_heap

    if not args.default_heap:
        tune_heap()  # as the `lawtune` command does (only with LAWTUNE_MMAP_THRESHOLD_MIB set)

    phases, notes, model = Phases(), {}, None
    out = args.out or Path(tempfile.mkdtemp(prefix="lawtune-memory-"))
    print(f"RSS after start-up {rss_mib():,.0f} MiB; work folder {out}")

    def phase(name, work):
        nonlocal model
        if name not in args.phases:
            return None
        profiler = None
        if args.explain:
            from torch.profiler import ProfilerActivity, profile

            profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        with phases(name):
            if profiler is not None:
                with profiler:
                    result = work()
            else:
                result = work()
        # pages the kernel had to map (and zero) for this process: what memory handed back costs when reused
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        notes[name] = {**held(model), "why": explain(profiler) if profiler is not None else [], "minor_faults": faults}
        return result

    # ---- the demo's data and training --------------------------------------------------------------------------
    from lawtune import bundled
    from lawtune.data.prepare import run as prepare
    from lawtune.modeling.runs import resolve_model_path

    from lawtune.demo import RAG_TRAIN, rag_training_mix

    data = out / "data"

    def prepare_demo_data():  # as `lawtune demo` does: the sample's splits, and its training file with RAG rows
        rag_training_mix(out, prepare([bundled.sample_csv()], data))

    phase("prepare", prepare_demo_data)
    if not (data / RAG_TRAIN).is_file():
        prepare_demo_data()

    def import_model_fresh():  # as `lawtune demo` on a fresh machine: the GGUF dequantized in this process
        import os

        from lawtune.modeling.importer import import_model

        os.environ["LAWTUNE_HOME"] = str(out / "home")
        return import_model()

    model_dir = phase("import", import_model_fresh) if "import" in args.phases else resolve_model_path(args.model)

    def train():
        from lawtune.training.train import run

        overrides = [f"model.name_or_path={model_dir}", f"data_config.train_file={data / RAG_TRAIN}",
                     f"data_config.val_file={data / 'dev.jsonl'}", f"training_args.output_dir={out / 'run'}",
                     f"training_args.max_steps={args.steps}", f"training_args.eval_steps={args.steps}",
                     f"training_args.save_steps={args.steps}"]
        return run(bundled.config("demo"), overrides, resume="none")

    timeline = Timeline() if args.timeline and "train" in args.phases else None
    if timeline is not None:
        with timeline, watch_training(timeline):
            run_dir = phase("train", train)
    else:
        run_dir = phase("train", train)
    run_dir = args.run or run_dir
    release_memory()

    # ---- the base model on the held-out questions ----------------------------------------------------------
    from lawtune.data.conversations import read_examples
    from lawtune.evaluation.evaluate import resolve_mcq
    from lawtune.evaluation.generation import GenerationSettings, generate
    from lawtune.evaluation.scoring import eval_loss, mcq_accuracy, read_mcq
    from lawtune.evaluation.settings import DEFAULT_MCQ
    from lawtune.modeling.loading import load_model

    examples = list(read_examples(data / "test.jsonl", args.questions))

    def load():
        nonlocal model
        loaded = load_model(model_dir)
        model = loaded.model
        return loaded

    loaded = phase("load", load)
    if loaded is None and {"generation", "loss", "mcq"} & set(args.phases):
        loaded = load()
    settings = GenerationSettings(max_new_tokens=args.new_tokens)
    phase("generation", lambda: generate(loaded, [e.prompt for e in examples], settings, show_progress=False))
    phase("loss", lambda: eval_loss(loaded, examples, show_progress=False))
    mcq_paths = resolve_mcq(list(DEFAULT_MCQ))
    phase("mcq", lambda: [mcq_accuracy(loaded, read_mcq(path, args.mcq_limit), show_progress=False) for path in mcq_paths])
    loaded = model = None
    release_memory()

    # ---- compare: both models, one after the other --------------------------------------------------------
    compare_timeline = None
    if "compare" in args.phases:
        if run_dir is None:
            raise SystemExit("the compare phase needs the train phase or --run (a run folder)")
        from lawtune.evaluation.compare import run as compare

        from lawtune.evaluation.settings import EvalOptions

        def compare_both():
            return compare("base", run_dir, data / "test.jsonl", out / "report", settings=settings,
                           options=EvalOptions(mcq_limit=args.mcq_limit, limit=args.questions))

        compare_timeline = Timeline() if args.timeline else None
        if compare_timeline is not None:
            with compare_timeline, watch_compare(compare_timeline):
                phase("compare", compare_both)
        else:
            phase("compare", compare_both)

    # ---- report ------------------------------------------------------------------------------------------------
    print(f"\n{'phase':<11} {'seconds':>8} {'start':>7} {'peak':>7} {'end':>7} {'peak-start':>10} {'model':>7} {'head bufs':>9}  (MiB) {'page faults':>12}")
    for record in phases.records():
        note = notes[record["name"]]
        print(f"{record['name']:<11} {record['seconds']:>8.1f} {record['rss_start_mib']:>7,} {record['peak_rss_mib']:>7,} "
              f"{record['rss_end_mib']:>7,} {record['peak_rss_mib'] - record['rss_start_mib']:>10,} "
              f"{note['model_mib']:>7,} {note['head_buffers_mib']:>9,}        {note['minor_faults']:>12,}")
        for line in note["why"]:
            print(f"{'':<11} {line}")
    print(phases.lines()[-1])
    if timeline is not None:
        print("train phase, the highest RSS sampled (every 5 ms) in each part of a step:")
        print("\n".join(timeline.lines()))
    if compare_timeline is not None:
        print("compare phase, the highest RSS sampled (every 5 ms) in each part (step 1: the base model, 2: the tuned):")
        print("\n".join(compare_timeline.lines()))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "phases": [{**r, **notes[r["name"]]} for r in phases.records()]},
                                        ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
