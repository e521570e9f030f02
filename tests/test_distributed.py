"""Multi-process runs on CPU: two processes under `accelerate launch` (gloo) against one process.

The launched worker is `tests/distributed/run_tcs.py`. Tests marked `distributed` start real processes (about 15-25 s
each on two cores); deselect them with `-m "not distributed"`.
"""

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import psutil
import pytest
import torch
from transformers import ViTImageProcessor

import hf_tcs.teachers
from hf_tcs import CoordinateSystem, TCSConfig, load_teacher, precompute_teacher_features
from hf_tcs.distributed import end_process_group
from hf_tcs.teachers import Teacher

WORKER = Path(__file__).parent / "distributed" / "run_tcs.py"
_spec = importlib.util.spec_from_file_location("run_tcs", WORKER)
run_tcs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_tcs)


def launch(*args: str, tmp_path: Path, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    """Run the worker in two processes; kill them all if they outlive `timeout`. Returns the result and seconds."""
    with socket.socket() as probe:  # a free port for this run's rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        *("-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"),
        *("--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port)),
        str(WORKER),
        *args,
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "hf_datasets_cache"),
        "OMP_NUM_THREADS": "1",  # two processes on two cores
    }
    start = time.monotonic()
    # Its own session, so that a hung run is killed with the workers the launcher started.
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        output = kill_launch(process)
        pytest.fail(f"The two processes were still running after {timeout} s:\n{output[-5000:]}")
    return subprocess.CompletedProcess(command, process.returncode, output), time.monotonic() - start


def kill_launch(process: subprocess.Popen) -> str:
    """Kill a hung launch, workers included, and return its output so far.

    The workers run in sessions of their own (torch elastic starts them so): killing the launcher's process group
    would leave them waiting, holding the output pipe open.
    """
    for child in psutil.Process(process.pid).children(recursive=True):
        child.kill()
    os.killpg(process.pid, signal.SIGKILL)
    return process.communicate()[0]


@pytest.fixture(scope="module")
def image_data(tmp_path_factory, cifar10_sample) -> str:
    """64 CIFAR-10 images with the student's pixel_values, saved to disk: every process reads the same files."""
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    dataset = cifar10_sample.select(range(64)).map(
        lambda batch: {"pixel_values": processor(images=batch["image"], return_tensors="np")["pixel_values"]},
        batched=True,
    )
    path = tmp_path_factory.mktemp("distributed") / "images"
    dataset.save_to_disk(path)
    return str(path)


@pytest.fixture(scope="module")
def two_processes(image_data, teacher_dirs, tmp_path_factory) -> dict:
    """One two-process run of the worker: teacher passes, then a trainer that fits the coordinates and trains 2 x 8."""
    out = tmp_path_factory.mktemp("two_processes")
    cached_dir = str(out / "single_process_cache")
    teacher = load_teacher(teacher_dirs["dino"], device="cpu")
    precompute_teacher_features(
        datasets.load_from_disk(image_data, keep_in_memory=True), teacher, cache_dir=cached_dir
    )
    result, _ = launch(
        *("--data", image_data, "--teacher", str(teacher_dirs["dino"]), "--out", str(out), "--train"),
        *("--cached-dir", cached_dir),
        tmp_path=out,
    )
    assert result.returncode == 0, result.stdout[-5000:]
    return {"ranks": [dict(np.load(out / f"rank{rank}.npz")) for rank in range(2)], "weights": out / "weights.npz"}


@pytest.fixture(scope="module")
def reference_features(image_data, teacher_dirs) -> np.ndarray:
    """The teacher's features of every image, computed here in one process without any cache."""
    images = datasets.load_from_disk(image_data)["image"]
    return load_teacher(teacher_dirs["dino"], device="cpu").encode(images)


@pytest.mark.distributed
def test_each_process_encodes_its_own_shard_and_gets_the_whole_column_in_order(
    two_processes, reference_features, image_data, teacher_dirs, monkeypatch
):
    ranks = two_processes["ranks"]
    for teacher_pass in ("disk", "memory"):
        assert [int(rank[f"{teacher_pass}_rows"]) for rank in ranks] == [32, 32], f"{teacher_pass}: a half per rank"
    assert [int(rank["cached_rows"]) for rank in ranks] == [0, 0], "a single-process cache serves two processes"
    assert [int(rank["trainer_rows"]) for rank in ranks] == [0, 0], "the trainer's pass hit the cache"
    for rank in ranks:
        np.testing.assert_allclose(rank["disk_features"], reference_features, atol=1e-6)
        np.testing.assert_array_equal(rank["memory_features"], rank["disk_features"])
        np.testing.assert_allclose(rank["cached_features"], reference_features, atol=1e-6)

    # A later single-process pass loads what the two processes cached instead of running the teacher.
    calls = []
    monkeypatch.setattr(Teacher, "encode", lambda self, batch: calls.append(len(batch)))
    single = precompute_teacher_features(datasets.load_from_disk(image_data), load_teacher(teacher_dirs["dino"]))
    assert calls == []
    np.testing.assert_array_equal(run_tcs.features_of(single), ranks[0]["disk_features"])


@pytest.mark.distributed
def test_every_process_holds_the_single_process_coordinate_system(two_processes, reference_features):
    rank0, rank1 = two_processes["ranks"]
    reference = CoordinateSystem.fit(reference_features, num_components=16)
    for key in ("mean", "components", "eigenvalues"):
        np.testing.assert_array_equal(rank0[key], rank1[key], err_msg=key)
        np.testing.assert_allclose(rank0[key], getattr(reference, key), atol=1e-6, err_msg=key)


@pytest.mark.distributed
def test_two_processes_of_batch_8_train_like_one_process_of_batch_16(
    two_processes, image_data, teacher_dirs, tmp_path
):
    trainer = run_tcs.make_trainer(image_data, str(teacher_dirs["dino"]), str(tmp_path / "out"), batch_size=16)
    initial = {name: tensor.clone() for name, tensor in trainer.model.state_dict().items()}
    trainer.train()
    distributed = np.load(two_processes["weights"])
    final = trainer.model.state_dict()
    assert set(distributed.files) == set(final) and any("tcs" in name for name in final)
    assert max((final[name] - initial[name]).abs().max().item() for name in final) > 1e-2, "training must move"
    for name, tensor in final.items():
        np.testing.assert_allclose(distributed[name], tensor.numpy(), atol=1e-6, err_msg=name)
    # The logged loss terms are means over both processes' batches: the 1 x 16 run's, on every rank.
    single = run_tcs.logged_losses(trainer)
    assert single.shape == (4, 2)
    for rank in range(2):
        np.testing.assert_allclose(two_processes["ranks"][rank]["losses"], single, rtol=1e-5)


@pytest.mark.distributed
def test_two_processes_of_batch_8_with_a_pool_train_like_one_process_of_batch_16(image_data, teacher_dirs, tmp_path):
    """Each rank draws its own part of the pool (and runs the teacher on its shard of it): 2 x 8 == 1 x 16."""
    result, _ = launch(
        *("--data", image_data, "--teacher", str(teacher_dirs["dino"]), "--out", str(tmp_path), "--train"),
        *("--pool", "24"),
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-5000:]
    trainer = run_tcs.make_trainer(image_data, str(teacher_dirs["dino"]), str(tmp_path / "one"), 16, pool=24)
    assert len(trainer.unlabeled_dataset) == 24 and trainer.coordinate_system.num_examples == 64
    trainer.train()
    distributed = np.load(tmp_path / "weights.npz")
    for name, tensor in trainer.model.state_dict().items():
        np.testing.assert_allclose(distributed[name], tensor.numpy(), atol=1e-6, err_msg=name)
    single = run_tcs.logged_losses(trainer, ("ce_loss", "tcs_loss", "tcs_unlabeled_loss"))
    assert single.shape == (4, 3)
    for rank in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"rank{rank}.npz")["losses"], single, rtol=1e-5)


@pytest.mark.distributed
def test_an_error_on_one_process_stops_both_with_its_message(cifar10_sample, teacher_dirs, tmp_path):
    rows = cifar10_sample.select(range(16)).cast_column("image", datasets.Image(decode=False)).to_dict()
    rows["image"][12] = {"bytes": b"not an image", "path": None}  # in rank 1's shard, rows 8-15
    datasets.Dataset.from_dict(rows, features=cifar10_sample.features).save_to_disk(tmp_path / "broken")

    result, seconds = launch(
        *("--data", str(tmp_path / "broken"), "--teacher", str(teacher_dirs["dino"]), "--out", str(tmp_path)),
        tmp_path=tmp_path,
    )
    assert result.returncode != 0 and seconds < 60, result.stdout[-5000:]
    errors = [(tmp_path / f"error-rank{rank}.txt").read_text() for rank in range(2)]
    assert "ValueError: Row 12 of column 'image' could not be decoded" in errors[1]
    assert "RuntimeError: The teacher pass failed on rank 1 of 2: ValueError: Row 12 of column 'image'" in errors[0]


@pytest.mark.distributed
def test_inside_main_process_first_the_main_process_runs_the_pass_and_the_others_load_its_cache(
    image_data, reference_features, teacher_dirs, tmp_path
):
    # The transformers examples' idiom: rank 1 waits at main_process_first's barrier while rank 0 runs the pass. Then
    # rank 1 runs one more pass that rank 0 never runs: it stops with an error instead of waiting for rank 0 forever.
    data = tmp_path / "images"  # a copy that no earlier pass has cached features next to
    datasets.load_from_disk(image_data).save_to_disk(data)
    result, seconds = launch(
        *("--data", str(data), "--teacher", str(teacher_dirs["dino"]), "--out", str(tmp_path)),
        *("--main-first", "--unmatched-pass", "--wait", "3"),
        tmp_path=tmp_path,
    )
    assert result.returncode != 0 and seconds < 90, result.stdout[-5000:]
    ranks = [dict(np.load(tmp_path / f"rank{rank}.npz")) for rank in range(2)]
    for teacher_pass in ("disk", "memory"):
        assert [int(rank[f"{teacher_pass}_rows"]) for rank in ranks] == [64, 0], f"{teacher_pass}: rank 1 loads it"
        for rank in ranks:
            np.testing.assert_allclose(rank[f"{teacher_pass}_features"], reference_features, atol=1e-6)
    assert not (tmp_path / "error-rank0.txt").exists()
    error = (tmp_path / "error-rank1.txt").read_text()
    assert "RuntimeError: Rank 1 waited 3 s for the main process to start the same teacher pass" in error
    assert "inside `main_process_first`" in error


def test_bfloat16_teacher_pass_gives_float32_features_close_to_float32_ones(teacher_dirs, cifar10_sample):
    images = cifar10_sample.select(range(32))
    full = precompute_teacher_features(images, load_teacher(teacher_dirs["dino"], device="cpu"))
    teacher = load_teacher(teacher_dirs["dino"], device="cpu", dtype="bfloat16")
    assert teacher.dtype == torch.bfloat16
    half = precompute_teacher_features(images, teacher)
    assert half.features["teacher_features"] == full.features["teacher_features"]  # float32, fixed length
    assert half._fingerprint != full._fingerprint, "bfloat16 features must not be served from the float32 cache"
    full, half = (np.asarray(ds.with_format("numpy")["teacher_features"]) for ds in (full, half))
    assert half.dtype == np.float32 and not np.array_equal(half, full)
    error = np.linalg.norm(half - full, axis=1) / np.linalg.norm(full, axis=1)
    assert error.max() < 0.03, error.max()


def test_trainer_runs_the_teacher_in_teacher_dtype_and_frees_it_before_training(
    image_data, teacher_dirs, tmp_path, monkeypatch
):
    teachers = []
    load = hf_tcs.teachers.load_teacher

    def recording_load(*args, **kwargs):
        teachers.append(load(*args, **kwargs))
        return teachers[-1]

    monkeypatch.setattr("hf_tcs.teachers.load_teacher", recording_load)
    trainer = run_tcs.make_trainer(
        image_data, str(teacher_dirs["dino"]), str(tmp_path), batch_size=16, teacher_dtype="bfloat16", max_steps=1
    )
    (teacher,) = teachers
    assert teacher.dtype == torch.bfloat16
    assert trainer.train_dataset.features["tcs_coordinates"].feature.dtype == "float32"
    assert all(parameter.is_meta for parameter in teacher.model.parameters()), "the teacher must be freed"
    trainer.train()
    with pytest.raises(ValueError, match="teacher_dtype='int8'"):
        TCSConfig(output_dir=str(tmp_path), teacher_dtype="int8")


def test_end_process_group_destroys_the_launched_group_and_is_a_no_op_without_one(tmp_path):
    end_process_group()  # no process group: nothing to do
    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    assert torch.distributed.is_initialized()
    end_process_group()
    assert not torch.distributed.is_initialized()
