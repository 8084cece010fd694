"""Training: the loop over epochs and batches, on top of ``Model.value_and_grad``.

In: a :class:`~specc.api.Model`, data (a file, a built-in dataset's name, a
:class:`~specc.training.data.Dataset` or a dict of arrays) and a training
configuration (the spec's ``train`` block, overridden by keyword arguments
or command-line options).
Out: a :class:`History` (loss and metric per epoch, the test result, timings);
on the way, a progress bar per epoch, checkpoints, plots.

A step runs where the model's target does: on the host (:class:`HostSteps`:
NumPy parameters, :mod:`specc.training.optim`), or for target cuda on the GPU
(:class:`CudaSteps`: parameters and optimizer state stay device arrays for the
whole run, updated by :mod:`specc.backends.cuda.optim`'s kernels); started by
``mpiexec``, on this rank's rows of every batch, the gradients summed over the
ranks (:class:`specc.training.distributed.DataParallelSteps`; rank 0 alone
prints and writes).

Reproducible by construction: every random choice is derived from the run's
seed and a position, never from a generator carried along:

* the validation split from (seed);
* the order of epoch e from (seed, e);
* the random draws of optimizer step s (dropout, a VAE's noise) from (seed, s);
* the augmentation of step s's batch (``augment = shift``) from (seed, s).

So the same seed gives the same loss curve bit for bit on the same machine,
and a run resumed from a checkpoint of epoch e continues exactly as if it
had not stopped.  When the loss or a gradient stops being finite, training
stops with the equation (spec line) and, in a recurrence, the time step
where a value first became NaN or infinite (:mod:`specc.training.nanguard`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from . import checkpoint as ckpt_io
from . import distributed
from .callbacks import Monitor, TensorBoardLog, best_path, check_monitor, compile_kernels, run_callbacks, write_csv_log
from .config import ALIASES, TrainConfig
from .history import EpochRecord, History  # noqa: F401  (History is public here too)
from .data import DATASETS, Dataset, Splits, augment_batch, check_augment, dataset, load, load_dataset
from ..errors import ConfigError
from .metrics import Metric, choose_metric
from .nanguard import check_params, first_nonfinite, nonfinite_error
from .optim import OptState, Optimizer, clip_by_global_norm, clip_scale, learning_rate, make_optimizer, plateau_scale

if TYPE_CHECKING:
    from rich.console import Console

    from ..api import Model
    from .gradflow import StateFlow

SHUFFLE_STREAM, STEP_STREAM, AUGMENT_STREAM = 1, 2, 3
TRAIN_METRIC_MAX = 4096  # examples of the training split the metric is measured on after each epoch


@contextlib.contextmanager
def blas_threads() -> Iterator[None]:
    """Hold BLAS to one thread while training (kernels split their work themselves, see specc.runtime).

    A model's products are small (64 x 64 x 128 for the MLP), where BLAS threads
    only synchronise: on a loaded two-core machine that product took 31 ms with
    the default threads and 0.08 ms with one.  One thread also keeps the
    floating-point sums in one order, whatever the machine.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def step_seed(seed: int, step: int) -> int:
    """The seed of optimizer step ``step``'s random draws (dropout masks, sampled noise)."""
    return int(np.random.SeedSequence([seed % 2**32, STEP_STREAM, step]).generate_state(1)[0])


def augment_rng(seed: int, step: int) -> np.random.Generator:
    """The generator of optimizer step ``step``'s augmentation (one shift per example)."""
    return np.random.default_rng([seed % 2**32, AUGMENT_STREAM, step])


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed % 2**32, SHUFFLE_STREAM, epoch]).permutation(n)


def as_splits(model: Model, data: Any) -> Splits:
    """Whatever ``data`` is (see :func:`train`) as a Splits."""
    if isinstance(data, Splits):
        return data
    if isinstance(data, Dataset):
        return Splits(data)
    if isinstance(data, Mapping):
        return Splits(dataset(model, data, name="arrays"))
    if isinstance(data, str) and data in DATASETS and not Path(data).is_file():
        return load_dataset(data, model)
    if isinstance(data, (str, Path)):
        return Splits(load(data, model))
    raise TypeError(f"cannot train on {type(data).__name__}: give a file path, a dataset name "
                    f"({', '.join(DATASETS)}), a specc.training.data.Dataset or a dict of arrays")


def resumed_config(model: Model, ck: ckpt_io.Checkpoint, overrides: Mapping[str, Any], console: Console
                   ) -> TrainConfig:
    """The settings of a resumed run: the checkpoint's, then the options given now (command line or
    keyword arguments); the spec's ``train`` block is not read.  Said on stderr, even with --quiet,
    when the spec text differs from the one the checkpoint was saved from, or its ``train`` block
    asks for settings that the checkpoint's override."""
    given = {k: v for k, v in overrides.items() if v is not None}
    config = TrainConfig(**{**ck.meta["config"], **given})
    if ck.meta.get("spec_hash") not in (None, ckpt_io.spec_hash(model)):
        console.print("warning: the checkpoint was saved from a different spec text; its parameters fit this "
                      "one, so training goes on", markup=False)
    spec_cfg = model.train_config().model_dump()
    written = set(model.program.train)  # the keys the spec's train block sets itself
    written = {ALIASES.get(k, k) for k in written}
    differ = [k for k in sorted(written) if k not in given and spec_cfg.get(k) != getattr(config, k, None)]
    if differ:
        pairs = ", ".join(f"{k} {getattr(config, k)!r} (the spec says {spec_cfg[k]!r})" for k in differ)
        console.print(f"note: resuming with the checkpoint's settings: {pairs}; options given now "
                      f"(--lr, ...) override them", markup=False)
    return config


class Trainer:
    """One training run.  ``Trainer(model, data, epochs=3).fit()`` returns the :class:`History`."""

    def __init__(self, model: Model, data: Any, *, config: TrainConfig | None = None,
                 checkpoint: str | Path | None = None, resume: str | Path | None = None,
                 progress: bool = True, console: Console | None = None, plots: str | Path | None = None,
                 grad_flow: bool = False,
                 on_epoch: Callable[[EpochRecord], Any] | Sequence[Callable[[EpochRecord], Any]] | None = None,
                 log_csv: str | Path | None = None, tensorboard: str | Path | None = None, **overrides: Any):
        self.model = model
        self.world = distributed.world()  # one process, or this rank of an MPI run (data-parallel)
        from rich.console import Console

        self.console = console or Console(stderr=True, highlight=False)
        self.resumed = ckpt_io.load(resume, EpochRecord) if resume is not None else None
        if config is None:
            if self.resumed is not None:  # the run's own settings, then any overrides (docs/training.md)
                config = resumed_config(model, self.resumed, overrides, self.console)
            else:
                config = model.train_config(**overrides)
        self.cfg = config
        if checkpoint is not None:
            stale = ckpt_io.remove_stale_temps(checkpoint)
            if stale and progress:
                self.console.print(f"removed {len(stale)} temporary file(s) of an interrupted checkpoint write")
        splits = as_splits(model, data)
        self.train_set, self.val_set = splits.train.split(self.cfg.val_split, self.cfg.seed)
        self.test_set = splits.test
        self.augmented = check_augment(model, self.cfg.augment)  # the inputs augment moves
        self.metric: Metric | None = choose_metric(model)
        self.optimizer = make_optimizer(self.cfg)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.plots = Path(plots) if plots is not None else None
        if self.plots is not None:  # a missing extra fails now, not after training
            from .plots import require_matplotlib

            require_matplotlib()
        self.want_grad_flow = grad_flow
        self.on_epoch = [] if on_epoch is None else [on_epoch] if callable(on_epoch) else list(on_epoch)
        self.monitor = Monitor.from_config(self.cfg, self.metric)
        check_monitor(self.monitor, self.cfg, self.val_set is not None)
        self.best = best_path(self.checkpoint) if self.checkpoint is not None else None
        root = self.world.is_root  # only rank 0 prints, plots and writes logs
        self.log_csv = Path(log_csv) if log_csv is not None and root else None
        self.tensorboard = TensorBoardLog(tensorboard) if tensorboard is not None and root else None
        self.show = progress and root
        if not root:
            self.plots = None
        self.out = Console(highlight=False) if console is None else console

    # -- the run -----------------------------------------------------------------------------
    def fit(self) -> History:
        """Train (from the start or the checkpoint resumed) up to ``epochs``; the history of the whole run."""
        with blas_threads():
            return self._fit()

    def _fit(self) -> History:
        model, cfg = self.model, self.cfg
        started = time.perf_counter()
        params, state, history = self._start()
        flows_before = self._grad_flow(params) if self.want_grad_flow else None
        steps_per_epoch = math.ceil(len(self.train_set) / cfg.batch)
        first = len(history.records) + 1
        history.compile_seconds += compile_kernels(model, self.console if self.show else None,
                                                   functools.partial(self._warm_up, params))[1]
        steps = self._steps(params, state)
        self.world.check_same(params, "at the start")
        history.stopped = self._early_stop(history)  # a resumed run that had already stopped stays stopped
        for epoch in range(first, cfg.epochs + 1):
            if history.stopped:
                break
            record = self._epoch(epoch, steps, steps_per_epoch, self._lr_scale(history))
            history.records.append(record)
            if self.world.parallel:  # every rank holds the same parameters (CudaSteps.host() would copy them)
                self.world.check_same(steps.host()[0], f"after epoch {epoch}")
            self._after_epoch(history, steps)
            history.stopped = run_callbacks(self.on_epoch, record) or self._early_stop(history)
        if self.tensorboard is not None:
            self.tensorboard.close()
        params, state = steps.host()
        if self.test_set is not None:
            history.test = self.world.evaluate(model, params, self.test_set, self.metric, seed=cfg.seed)
        if self.want_grad_flow:
            self._report_grad_flow(history, flows_before, self._grad_flow(params))
        history.seconds = time.perf_counter() - started + (history.seconds or 0.0)
        if self.checkpoint is not None:
            history.checkpoint = str(self.checkpoint)
            self._save(params, state, history)
        if self.plots is not None:
            self._plot(history, params)
        history.params = params
        if self.show:
            self._summary(history)
        return history

    def _start(self) -> tuple[dict[str, np.ndarray], OptState, History]:
        model, cfg = self.model, self.cfg
        metric = self.metric.name if self.metric else None
        if self.resumed is None:
            params = model.init_params(cfg.seed)
            return params, self.optimizer.init(params), History(model.name, cfg.model_dump(), metric)
        ck = self.resumed
        ckpt_io.check_fit(ck.params, model)
        ckpt_io.check_state(ck, self.optimizer.slots, cfg.optimizer)
        params = {k: ck.params[k] for k in model.param_shapes}
        history = History.from_records(model.name, cfg.model_dump(), metric, ck.meta.get("history", []))
        history.seconds = float(ck.meta.get("seconds", 0.0))
        history.best_epoch = ck.meta.get("best_epoch")
        if self.best is not None and history.best_epoch is not None and self.best.is_file():
            history.best_checkpoint = str(self.best)
        return params, ck.opt_state, history

    def _steps(self, params, state: OptState) -> HostSteps | CudaSteps | distributed.DataParallelSteps:
        """Where the steps run: this process's target, or this rank's rows under MPI."""
        model, cfg = self.model, self.cfg
        if self.world.parallel:
            if model.program.state_updates:  # each rank would see only its rows' statistics
                raise ConfigError("data-parallel training does not yet update states (batch norm's running "
                                  "statistics); train this model in one process")
            return distributed.DataParallelSteps(self.world, model, self.optimizer, cfg.clip, params, state,
                                                 self.train_set.axes)
        return (CudaSteps if model.backend.device_resident else HostSteps)(model, self.optimizer, cfg.clip, params, state)

    def _warm_up(self, params) -> None:
        """One gradient, one forward pass and one optimizer update on the first examples, all dropped
        (no step is taken, the parameters are unchanged)."""
        sample = dict(self.train_set.take(np.arange(min(len(self.train_set), self.cfg.batch))).arrays)
        with np.errstate(all="ignore"):
            _loss, grads = self.model.value_and_grad(params, seed=self.cfg.seed, training=True, **sample)
            self.model.forward(params, seed=self.cfg.seed, training=False, **sample)
            if not self.model.backend.device_resident:  # the host optimizer's compiled update (cuda: its own kernels)
                self.optimizer.update(params, grads, self.optimizer.init(params), self.cfg.lr)

    # -- between epochs: best checkpoint, logs, early stopping, reduce-on-plateau ------------------
    def _after_epoch(self, history: History, steps: HostSteps | CudaSteps) -> None:
        _best, best_epoch, _since = self.monitor.replay(history.records)
        history.best_epoch = best_epoch
        if self.checkpoint is not None:
            self._save(*steps.host(), history)
            if best_epoch == history.records[-1].epoch:
                self._save(*steps.host(), history, path=self.best)
                history.best_checkpoint = str(self.best)
        if self.log_csv is not None:
            write_csv_log(self.log_csv, history.records)
        if self.tensorboard is not None:
            self.tensorboard.write(history.records[-1])

    def _early_stop(self, history: History) -> str | None:
        """Why to stop now (``patience`` epochs without improvement of the monitored metric), or None."""
        if self.cfg.patience is None or not history.records:
            return None
        best, best_epoch, since = self.monitor.replay(history.records)
        if since < self.cfg.patience:
            return None
        shown = f"best {self.monitor.describe(best)} at epoch {best_epoch}" if best is not None else "no value"
        return (f"stopped early after epoch {history.records[-1].epoch}: {self.monitor.key} did not improve "
                f"for {since} epochs ({shown})")

    def _lr_scale(self, history: History) -> float:
        if self.cfg.schedule != "plateau":
            return 1.0
        values = [self.monitor.value(r) for r in history.records]
        return plateau_scale(values, self.monitor.better, self.cfg.plateau_patience, self.cfg.gamma)

    def _epoch(self, epoch: int, steps: HostSteps | CudaSteps, steps_per_epoch: int, scale: float = 1.0
               ) -> EpochRecord:
        model, cfg = self.model, self.cfg
        order = epoch_order(cfg.seed, epoch, len(self.train_set))
        loss_sum, seen, norm_sum, lr = 0.0, 0, 0.0, cfg.lr
        started = time.perf_counter()
        with self._bar(epoch, steps_per_epoch) as bar:
            for k, batch in enumerate(self.train_set.batches(cfg.batch, order)):
                step = steps.step
                lr = learning_rate(cfg, step, steps_per_epoch, scale)
                seed = step_seed(cfg.seed, step)
                if self.augmented:
                    batch = augment_batch(batch, self.augmented, cfg.augment, augment_rng(cfg.seed, step))
                guard = functools.partial(self._guard, epoch, k, step, batch, seed)
                loss, norm = steps.run(batch, seed, lr, guard)
                size = len(order[k * cfg.batch:(k + 1) * cfg.batch])
                loss_sum, seen, norm_sum = loss_sum + loss * size, seen + size, norm_sum + norm
                bar.advance(loss_sum / seen, seen / (time.perf_counter() - started))
            seconds = time.perf_counter() - started
            val = self.world.evaluate(model, steps.host()[0], self.val_set, self.metric, seed=cfg.seed) \
                if self.val_set else {}
            train = self._train_metric(steps.host()[0])
            bar.finish(val, train)
        return EpochRecord(epoch, lr, loss_sum / max(seen, 1), val, seconds, seen / max(seconds, 1e-9),
                           norm_sum / max(k + 1, 1), train)

    def _train_metric(self, params) -> dict[str, float]:
        """The metric on the training split at the epoch's end, in inference mode (as validation is
        measured, so the two compare); on a fixed sample of TRAIN_METRIC_MAX examples of a large split."""
        if self.metric is None:
            return {}
        data = self.train_set
        if len(data) > TRAIN_METRIC_MAX:
            data = data.take(np.sort(epoch_order(self.cfg.seed, 0, len(data))[:TRAIN_METRIC_MAX]))
        result = self.world.evaluate(self.model, params, data, self.metric, seed=self.cfg.seed)
        return {self.metric.name: result[self.metric.name]}

    # -- NaN / Inf ---------------------------------------------------------------------------
    def _guard(self, epoch, batch_index, step, batch, seed, params, loss, grads) -> None:
        bad_grad = next((k for k, g in grads.items() if not np.all(np.isfinite(g))), None)
        if np.isfinite(loss) and bad_grad is None:
            return
        model = self.model
        arrays, dims = model.bind_inputs(batch)
        args = [arrays[i.name] for i in model.program.inputs] + model.check_params(params)
        names = [i.name for i in model.program.inputs] + [p.name for p in model.program.params]
        where = f"training stopped at epoch {epoch}, step {step} (batch {batch_index + 1} of the epoch)"
        with np.errstate(all="ignore"):
            if not np.isfinite(loss):
                found = first_nonfinite(model.program.graph, args, dims, seed=seed, training=True)
                err = nonfinite_error(f"{where}: the loss is {float(loss)}", found, names)
            else:
                graph = model.grad_program().graph
                found = first_nonfinite(graph, args, dims, seed=seed, training=True)
                forward = list(model.program.graph.walk())
                backward_of = None
                if found is not None and found.eqn is not None and not any(e is found.eqn for e in forward):
                    backward_of = next((e.op for e in forward if e.loc == found.loc), "?")
                err = nonfinite_error(f"{where}: the gradient of '{bad_grad}' is not finite", found, names,
                                      backward_of=backward_of)
        if self.checkpoint is not None and self.checkpoint.exists():
            err.notes.append(f"the last good state is in {self.checkpoint}")
        raise err

    # -- checkpoints, grad flow, plots, output ---------------------------------------------------
    def _save(self, params, state: OptState, history: History, path: Path | None = None) -> None:
        if not self.world.is_root:  # rank 0 writes; every rank holds the same state (World.check_same)
            return
        check_params(params, f"not saving epoch {len(history.records)}")  # never a checkpoint of NaN
        meta = {"spec_hash": ckpt_io.spec_hash(self.model), "model": self.model.name,
                "config": self.cfg.model_dump(), "epoch": len(history.records), "step": state.step,
                "rng": {"seed": self.cfg.seed, "epoch": len(history.records), "step": state.step},
                "history": [asdict(r) for r in history.records], "test": history.test,
                "seconds": history.seconds, "best_epoch": history.best_epoch, "stopped": history.stopped}
        ckpt_io.save(path or self.checkpoint, ckpt_io.Checkpoint(params, state, meta))

    def _grad_flow(self, params) -> list[StateFlow]:
        from .gradflow import grad_flow

        batch = dict(self.train_set.take(np.arange(min(len(self.train_set), self.cfg.batch))).arrays)
        return grad_flow(self.model, params, batch, seed=self.cfg.seed)

    def _report_grad_flow(self, history: History, before, after) -> None:
        from .gradflow import format_flow

        history.grad_flow = {when: {f.state: [float(x) for x in f.norms] for f in flows}
                             for when, flows in (("before", before), ("after", after))}
        self._flows = [("before training", before), ("after training", after)]
        if self.show:
            for when, flows in self._flows:
                self.out.print(f"gradient flow {when}: ||dL/dS_t|| over a batch of {self.cfg.batch}")
                for line in format_flow(flows):
                    self.out.print(line)

    def _plot(self, history: History, params) -> None:
        from . import plots

        name = self.model.name if self.model.source is None else Path(self.model.source.name).stem
        d = self.plots
        history.files["curves"] = str(plots.plot_history(history, d / f"{name}_curves.png", title=name))
        if self.want_grad_flow and any(flows for _w, flows in self._flows):
            history.files["grad_flow"] = str(plots.plot_grad_flow(self._flows, d / f"{name}_grad_flow.png",
                                                                  title=f"{name}: gradient flow"))
        if self.metric is not None and self.metric.name == "mse":
            source = self.test_set or self.val_set or self.train_set
            sample = source.take(np.arange(min(16, len(source))))
            outs = self.model.forward(params, seed=self.cfg.seed, training=False, **sample.arrays)
            ax_in = sample.axes[self.metric.target]
            images = np.moveaxis(sample.arrays[self.metric.target], ax_in, 0)
            recons = np.moveaxis(np.asarray(outs[self.metric.output]), ax_in, 0)
            history.files["reconstructions"] = str(plots.plot_reconstructions(
                images, recons, d / f"{name}_reconstructions.png", title=f"{name}: {source.name}"))
        if self.show:
            for kind, path in history.files.items():
                self.out.print(f"wrote {kind} plot: {path}")

    def _bar(self, epoch: int, steps: int) -> _EpochBar:
        return _EpochBar(self, epoch, steps)

    def _summary(self, history: History) -> None:
        from rich.table import Table

        m = self.metric
        table = Table(title=f"{self.model.name}: {self.cfg.optimizer}, lr {self.cfg.lr:g}, batch {self.cfg.batch}")
        for col in ("epoch", "lr", "train loss", "val loss", f"train {m.name}" if m else None,
                    f"val {m.name}" if m else None, "time", "examples/s"):
            if col:
                table.add_column(col, justify="right")
        for r in history.records:
            row = [str(r.epoch), f"{r.lr:.3g}", f"{r.train_loss:.4f}", _fmt(r.val.get("loss"), "{:.4f}")]
            if m:
                row.append(m.format(r.train[m.name]) if m.name in r.train else "-")
                row.append(m.format(r.val[m.name]) if m.name in r.val else "-")
            row += [f"{r.seconds:.1f} s", f"{r.examples_per_s:,.0f}"]
            table.add_row(*row)
        self.out.print(table)
        if history.test is not None:
            t = history.test
            metric = f"test {m.name} {m.format(t[m.name])}, " if m else ""
            self.out.print(f"{metric}test loss {t['loss']:.4f} on {len(self.test_set)} held-out examples "
                           f"({self.test_set.name})")
        if history.stopped:
            self.out.print(history.stopped)
        if history.checkpoint:
            self.out.print(f"checkpoint: {history.checkpoint}")
        if history.best_checkpoint:
            self.out.print(f"best checkpoint ({self.monitor.key}, epoch {history.best_epoch}): "
                           f"{history.best_checkpoint}")


Guard = Callable[[Mapping[str, np.ndarray], Any, Mapping[str, np.ndarray]], None]  # (params, loss, grads)


class HostSteps:
    """Training steps on the host: parameters, gradients and optimizer state are NumPy arrays
    (``Model.value_and_grad``, then :mod:`specc.training.optim`); the targets cpu and interp."""

    def __init__(self, model: Model, optimizer: Optimizer, clip: float | None, params: dict[str, np.ndarray],
                 state: OptState):
        self.model, self.optimizer, self.clip = model, optimizer, clip
        self.params, self.state = params, state

    @property
    def step(self) -> int:
        return self.state.step

    def run(self, batch: Mapping[str, np.ndarray], seed: int, lr: float, guard: Guard) -> tuple[float, float]:
        """One optimizer step on one batch; returns (loss, the global gradient norm before clipping)."""
        states: dict[str, np.ndarray] = {}  # batch norm's running statistics after this step
        with np.errstate(all="ignore"):  # a NaN is reported by the guard, with its equation
            loss, grads = self.model.value_and_grad(self.params, seed=seed, training=True, states_out=states,
                                                    **batch)
        guard(self.params, loss, grads)
        grads, norm = clip_by_global_norm(grads, self.clip)
        with np.errstate(all="ignore"):  # an overflow is reported next, with the parameter
            params, state = self.optimizer.update(self.params, grads, self.state, lr)
        check_params(params, f"training stopped at step {self.state.step}", lr)  # before they replace the good ones
        self.params, self.state = params, state
        self.params.update(states)  # a state is not trained: its update replaces what the optimizer did
        return float(loss), norm

    def host(self) -> tuple[dict[str, np.ndarray], OptState]:
        return self.params, self.state


class CudaSteps:
    """Training steps on the GPU (target cuda): parameters and optimizer slots stay device arrays for
    the whole run (:class:`specc.backends.cuda.optim.DeviceOptimizer`).

    A step copies the batch (and the step's random draws) to the device, calls the compiled
    value-and-grad graph on device arrays, reduces the global gradient norm on the device and updates
    parameters and slots in place with the optimizer's kernel; the loss and the norm are the only
    numbers copied back.  Parameters and state come to the host only when asked (:meth:`host`:
    validation, checkpoints, the end of the run), and for the NaN guard when the loss or the norm is
    not finite.
    """

    def __init__(self, model: Model, optimizer: Optimizer, clip: float | None, params: dict[str, np.ndarray],
                 state: OptState):
        model.backend.require()
        self.model, self.clip = model, clip
        self.grad = model.grad_program()
        self.keep, self.kernel = model._kernel(("grad", False), self.grad.graph)  # the graph value_and_grad runs
        names = [p.name for p in model.program.params]
        self.opt = model.backend.device_optimizer(optimizer, dict(zip(names, model.check_params(params))), state)
        self._host: tuple[dict[str, np.ndarray], OptState] | None = (params, state)

    @property
    def step(self) -> int:
        return self.opt.step

    def run(self, batch: Mapping[str, np.ndarray], seed: int, lr: float, guard: Guard) -> tuple[float, float]:
        """One optimizer step on one batch; returns (loss, the global gradient norm before clipping)."""
        model = self.model
        arrays, dims = model.bind_inputs(batch)  # checked on the host (shapes, class ids)
        args = [arrays[i.name] for i in model.program.inputs] + [self.opt.params[p.name] for p in model.program.params]
        outs = self.kernel([args[i] for i in self.keep], dims, seed=seed, training=True, device=True)
        loss = outs[0].copy_to_host().reshape(())
        states = [(k, outs[i]) for k, i in model.program.state_updates]  # copied in after the optimizer step
        grads = dict(zip(self.grad.wrt, outs[self.grad.n_forward:]))
        norm = self.opt.global_norm(grads)
        if not (np.isfinite(loss) and math.isfinite(norm)):  # some gradient is not finite (or its square overflows)
            host_grads = {k: g.copy_to_host().reshape(self.opt.shapes[k]) for k, g in grads.items()}
            guard(self.host()[0], loss, host_grads)
        self.opt.update(grads, lr, clip_scale(norm, self.clip))
        for k, new in states:
            self.opt.params[k].copy_to_device(new.reshape(self.opt.params[k].shape))
        self._host = None
        return float(loss), norm

    def host(self) -> tuple[dict[str, np.ndarray], OptState]:
        """Parameters and optimizer state copied to the host (once per step at most)."""
        if self._host is None:
            self._host = (self.opt.host_params(), self.opt.host_state())
        return self._host


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else spec.format(x)


SHORT = {"accuracy": "acc"}


class _EpochBar:
    """A rich progress bar for one epoch: batches, running loss, throughput; the metric when done."""

    def __init__(self, trainer: Trainer, epoch: int, steps: int):
        self.trainer, self.epoch, self.steps = trainer, epoch, steps
        self.progress = None

    def __enter__(self) -> Self:
        if not self.trainer.show:
            return self
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn(f"epoch {self.epoch:>{len(str(self.trainer.cfg.epochs))}}/{self.trainer.cfg.epochs}"),
            BarColumn(bar_width=12), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
            console=self.trainer.console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task("", total=self.steps, info="")
        return self

    def advance(self, loss: float, speed: float) -> None:
        if self.progress is not None:
            self.loss, self.speed = f"loss {loss:.4f}", f"{speed:,.0f} ex/s"
            self.progress.update(self.task, advance=1, info=f"{self.loss}  {self.speed}")

    def finish(self, val: Mapping[str, float], train: Mapping[str, float] | None = None) -> None:
        if self.progress is None:
            return
        m = self.trainer.metric
        text = f"  val loss {val['loss']:.4f}" if "loss" in val and (m is None or m.name not in val) else ""
        if m is not None and m.name in (train or {}):
            text = f"  train {SHORT.get(m.name, m.name)} {m.format(train[m.name])}"
        if m is not None and m.name in val:
            text += f"  val {SHORT.get(m.name, m.name)} {m.format(val[m.name])}"
        self.progress.update(self.task, info=f"{self.loss}{text}  {self.speed}")

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


def train(model: Model | str | Path, data: Any, **options: Any) -> History:
    """Train ``model`` on ``data`` and return the :class:`History`.

    ``data``: a path (.npz, .npy, .csv), a built-in dataset's name (``"digits"``),
    a :class:`~specc.training.data.Dataset`, a :class:`~specc.training.data.Splits` or a dict of
    arrays named after the inputs.  ``options``: training settings that
    override the spec's ``train`` block (``epochs=3, lr=0.01, optimizer="sgd"``,
    any :class:`~specc.training.config.TrainConfig` field) and the :class:`Trainer`'s
    own (``checkpoint=``, ``resume=``, ``progress=``, ``plots=``, ``grad_flow=``, ``on_epoch=``,
    ``log_csv=``, ``tensorboard=``).
    The trained parameters are ``history.params``.
    """
    if not hasattr(model, "value_and_grad"):
        from ..api import compile

        model = compile(model)
    return Trainer(model, data, **options).fit()

