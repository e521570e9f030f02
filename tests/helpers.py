"""Helpers shared by the tests that train: the arguments of a tiny run, gradient recording, interrupting and resuming,
and the losses a trainer should compute, by hand from `hf_tcs.losses`."""

import numpy as np
import torch
from tiny_models import make_student
from transformers import TrainerCallback

from hf_tcs import TCSConfig, TCSDistillationTrainer
from hf_tcs.losses import coordinate_loss, masked_cross_entropy

# What every tiny test run shares: CPU, nothing reported or saved unless asked, a log at every step, fixed seeds.
TINY_RUN = dict(
    use_cpu=True,
    report_to="none",
    save_strategy="no",
    logging_steps=1,
    seed=0,
    data_seed=0,
    disable_tqdm=True,
)


def make_args(tmp_path, args_class=TCSConfig, **overrides) -> TCSConfig:
    """Arguments of a 4-step run writing to ``tmp_path/out`` (16 coordinates with a `TCSConfig`); ``overrides`` win."""
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        max_steps=4,
        dataloader_num_workers=0,
        **TINY_RUN,
    )
    if args_class is TCSConfig:
        kwargs["tcs_num_components"] = 16
    kwargs.update(overrides)
    return args_class(**kwargs)


def resumable_args(tmp_path, output: str, **overrides) -> TCSConfig:
    """Arguments of a 6-step run (batch 8) into ``tmp_path/output`` that saves a checkpoint every 3 steps."""
    settings = dict(max_steps=6, per_device_train_batch_size=8, save_strategy="steps", save_steps=3)
    return make_args(tmp_path, output_dir=str(tmp_path / output), **{**settings, **overrides})


def train(tmp_path, dataset, *, model=None, teacher=None, processing_class=None, **overrides):
    """A tiny student (or ``model``) trained 4 steps on ``dataset``, also its eval set (evaluated at step 4), with one
    tailoring step (at step 2); ``overrides`` go to `make_args`."""
    settings = dict(
        max_steps=4,
        eval_strategy="steps",
        eval_steps=4,
        tcs_selection_strategy="steps",
        tcs_selection_steps=2,
        tcs_selection_rounds=1,
        tcs_min_components=4,
    )
    trainer = TCSDistillationTrainer(
        model=model or make_student(),
        args=make_args(tmp_path, **{**settings, **overrides}),
        train_dataset=dataset,
        eval_dataset=dataset,
        teacher=teacher,
        processing_class=processing_class,
    )
    trainer.train()
    return trainer


def train_and_grads(trainer) -> list[dict[str, torch.Tensor]]:
    """Train, recording the (accumulated) gradients of every optimizer step."""
    grads = []

    class Recorder(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})

    trainer.add_callback(Recorder())
    trainer.train()
    return grads


def interrupt_and_resume(run, output_dir, step: int = 3) -> tuple:
    """``run("resumed", ...)`` (a trainer writing to ``output_dir``) stopped after ``step`` steps, having saved
    checkpoint-``step``, and a fresh ``run("resumed")`` resumed from that checkpoint to the end."""

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == step

    interrupted = run("resumed", callbacks=[Stop()])
    interrupted.train()
    resumed = run("resumed")
    resumed.train(resume_from_checkpoint=str(output_dir / f"checkpoint-{step}"))
    return interrupted, resumed


def assert_same_weights(model, other) -> None:
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def column(dataset, name: str) -> np.ndarray:
    """A whole dataset column as a numpy array."""
    return np.asarray(dataset.with_format("numpy")[:][name])


def scaled_targets(trainer, scale) -> torch.Tensor:
    """The teacher coordinates of ``trainer.train_dataset`` times ``scale``: what the coordinate loss compares to."""
    coordinates = trainer.train_dataset.select_columns(["tcs_coordinates"]).with_format("torch")[:]["tcs_coordinates"]
    return coordinates * torch.as_tensor(scale, dtype=torch.float32)


def losses_by_hand(trainer, scale, num_dims: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The student's logits, cross-entropy and coordinate loss on the whole of ``trainer.train_dataset`` (an image
    set; labels None or -100 are unlabelled), computed with `hf_tcs.losses` from its coordinate column times
    ``scale``, over ``num_dims`` dimensions.

    Runs the student in eval mode (the tiny students have no dropout, so train mode computes the same).
    """
    dataset = trainer.train_dataset
    pixels = dataset.select_columns(["pixel_values"]).with_format("torch")[:]["pixel_values"]
    labels = torch.tensor([-100 if label is None else label for label in dataset["label"]])
    head = trainer.tcs_head
    model = trainer.model.eval()
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
        tcs = coordinate_loss(head.last_coordinates, scaled_targets(trainer, scale), head.active, num_dims=num_dims)
    return logits, masked_cross_entropy(logits, labels), tcs
