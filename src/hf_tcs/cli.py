"""`hf-tcs`: teacher-free knowledge distillation (TCS) from the command line.

`hf-tcs precompute`, `hf-tcs distill` and `hf-tcs push` run the jobs of `hf_tcs.jobs`. Each command's arguments are
the fields of its dataclasses (`DataArguments`, `StudentArguments`, `TCSConfig`, ...) read by an `HfArgumentParser`,
so `--help` lists every TCSConfig / TrainingArguments field, and `--config FILE.yaml` sets any of them (the command
line wins). A user error prints one line, as argparse does, instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import transformers
import yaml
from huggingface_hub.errors import HfHubHTTPError
from transformers import HfArgumentParser, TrainingArguments

from . import __version__
from .config import TCSConfig
from .data import DataArguments
from .features import check_launch
from .hub import HubPublishingError
from .jobs import PrecomputeArguments, PushArguments, distill, precompute, push
from .models import StudentArguments

__all__ = ["COMMANDS", "TCSArgumentParser", "command_parser", "main", "run"]

logger = logging.getLogger(__name__)

_EPILOG = """\
Every argument of a command can also come from --config FILE.yaml; the command line overrides the file.
`hf-tcs COMMAND --help` lists them all, with every TCSConfig / TrainingArguments field.

examples:
  hf-tcs precompute --dataset_name uoft-cs/cifar10 --teacher_model_name_or_path facebook/dinov2-small \\
      --output_dir cifar10-dinov2-features
  hf-tcs distill --dataset_name cifar10-dinov2-features --student_model_name_or_path facebook/deit-tiny-patch16-224 \\
      --augment --num_train_epochs 10 --output_dir deit-tiny-tcs
  hf-tcs distill --config examples/configs/cifar10_dino.yaml --learning_rate 1e-3
  hf-tcs push deit-tiny-tcs --hub_model_id my-name/deit-tiny-tcs
  accelerate launch --config_file examples/accelerate_configs/multi_gpu.yaml -m hf_tcs.cli distill ...
"""

# What a user can cause and fix: bad values, missing files or repos, no network, a refused push. Anything else is a
# bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, HfHubHTTPError, HubPublishingError)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the layout of descriptions and shows every default."""


class TCSArgumentParser(HfArgumentParser):
    """`HfArgumentParser` with `--config FILE.yaml` (TRL's `TrlParser` convention) and one-line errors.

    The YAML file maps argument names to values and sets the defaults; the command line overrides them.
    """

    def __init__(self, dataclass_types=None, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(dataclass_types, **kwargs)
        if self.dataclass_types:
            self.add_argument(
                "--config",
                metavar="FILE.yaml",
                help="YAML file of argument values (name: value); command-line arguments override them.",
            )

    def error(self, message: str):
        # argparse would print the whole usage first, hundreds of options long with TrainingArguments.
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)

    def parse_args_and_config(self, args: Sequence[str] | None = None) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The dataclasses, filled from `--config` and the command line, and the other arguments by name."""
        args = sys.argv[1:] if args is None else list(args)
        config_parser = TCSArgumentParser(prog=self.prog, add_help=False, allow_abbrev=False)
        config_parser.add_argument("--config")
        known, args = config_parser.parse_known_args(args)
        if known.config:
            self.set_defaults(**self._read_config(known.config))
        # Unknown arguments first: they usually explain why a dataclass would reject the others.
        _, remaining = self.parse_known_args(args)
        if remaining:
            self.error(f"unrecognized arguments: {' '.join(remaining)}")
        outputs = self.parse_args_into_dataclasses(args, look_for_args_file=False)
        count = len(self.dataclass_types)
        extra = vars(outputs[count]) if len(outputs) > count else {}
        extra.pop("config", None)
        return tuple(outputs[:count]), extra

    def _read_config(self, path: str) -> dict[str, Any]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--config {path}: no such file.")
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(values, dict):
            raise ValueError(f"--config {path} must hold a mapping of argument names to values.")
        known = {action.dest for action in self._actions} - {"help", "config"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"--config {path} sets unknown arguments {unknown}: see `{self.prog} --help`.")
        return values


@dataclass(frozen=True)
class Command:
    """A subcommand: the job it runs, the dataclasses its arguments fill (in the job's order), and its help."""

    job: Callable[..., Any]
    dataclass_types: tuple[type, ...]
    summary: str
    help: str
    usage: str = "%(prog)s [--config FILE.yaml] [options]"
    positionals: tuple[tuple[str, dict[str, str]], ...] = ()


COMMANDS = {
    "precompute": Command(
        precompute,
        (DataArguments, PrecomputeArguments, TCSConfig),
        "teacher pass + coordinate system of a dataset, saved (and pushed as a Hub dataset)",
        "Run the teacher once over a dataset and fit the coordinate system: save the dataset with teacher features "
        "and coordinates (save_to_disk) and the coordinate system (tcs/) to --output_dir, and push them as a Hub "
        "dataset with --push_to_hub --hub_dataset_id.",
    ),
    "distill": Command(
        distill,
        (DataArguments, StudentArguments, TCSConfig),
        "the whole job: dataset, teacher pass, student, training, evaluation, save (and push)",
        "Distil a teacher into a student: load the dataset, run the teacher pass (unless the dataset has its "
        "features), build the student, train it with cross-entropy + the coordinate loss, evaluate, save the folded "
        "student with its processor and tcs/ to --output_dir, and push it with --push_to_hub.",
    ),
    "push": Command(
        push,
        (PushArguments,),
        "push a student folder written by `hf-tcs distill` to the Hub",
        "Push a student folder written by `hf-tcs distill` (model, processor, tcs/) to a Hub model repo.",
        usage="%(prog)s OUTPUT_DIR --hub_model_id NAMESPACE/NAME [options]",
        positionals=(("folder", {"metavar": "OUTPUT_DIR", "help": "Folder written by `hf-tcs distill`."}),),
    ),
}


def command_parser(name: str, defaults: dict[str, Any] | None = None, **kwargs) -> TCSArgumentParser:
    """The parser of one command.

    A script built on a command passes its own argument `defaults` (a `--config` file and the command line still
    override them) and argparse `kwargs` (prog, description, ...).
    """
    command = COMMANDS[name]
    kwargs.setdefault("prog", f"hf-tcs {name}")
    kwargs.setdefault("description", command.help)
    kwargs.setdefault("usage", command.usage)
    parser = TCSArgumentParser(command.dataclass_types, **kwargs)
    for argument, options in command.positionals:
        parser.add_argument(argument, **options)
    parser.set_defaults(**(defaults or {}))
    return parser


def _top_parser() -> TCSArgumentParser:
    parser = TCSArgumentParser(
        prog="hf-tcs",
        description="Teacher-free knowledge distillation with a tailored coordinate system (TCS).",
        epilog=_EPILOG,
        usage="%(prog)s COMMAND [options]",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True)
    for name, command in COMMANDS.items():
        commands.add_parser(name, help=command.summary, add_help=False)
    return parser


def setup_logging(args: TrainingArguments) -> None:
    """The transformers examples' logging: info on the main process, warnings only on the others."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    if args.should_log:
        transformers.utils.logging.set_verbosity_info()
    level = args.get_process_log_level()
    logging.getLogger("hf_tcs").setLevel(level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)


def run(job: Callable[..., Any], parser: TCSArgumentParser, args: Sequence[str] | None = None) -> int:
    """Parse `args` with `parser` and call `job` with the result; return the exit status.

    A user error (a bad value, a missing file or repo, no network) prints one line, `<prog>: error: ...`, and
    returns 2, like argparse; `--log_level debug` adds its traceback. Other exceptions propagate with theirs.
    """
    try:
        outputs, extra = parser.parse_args_and_config(args)
        for output in outputs:
            if isinstance(output, TrainingArguments):
                check_launch(output)
                setup_logging(output)
        job(*outputs, **extra)
    except USER_ERRORS as error:
        logger.debug("Traceback of the error below:", exc_info=True)
        sys.stderr.write(f"{parser.prog}: error: {' '.join(str(error).split())}\n")
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `hf-tcs` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # The first argument picks the command (or asks for help / the version); the command's parser reads the rest.
    name = _top_parser().parse_args(argv[:1]).command
    return run(COMMANDS[name].job, command_parser(name), argv[1:])


if __name__ == "__main__":
    sys.exit(main())
