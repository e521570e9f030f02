"""`hf-tcs`: teacher-free knowledge distillation (TCS) from the command line.

`hf-tcs precompute`, `hf-tcs distill` and `hf-tcs push` run the jobs of `hf_tcs.jobs`. Each command's arguments are
the fields of its dataclasses (`DataArguments`, `StudentArguments`, `TCSConfig`, ...) read by an `HfArgumentParser`,
so `--help` lists every TCSConfig / TrainingArguments field a command reads, grouped (data, teacher, coordinates and
loss, student, then transformers' training arguments), `-h` the hf_tcs ones and the common training ones, and
`--config FILE.yaml` sets any of them (the command line wins). A user error prints one line, as argparse does, instead
of a traceback. Logging is quiet by default (hf_tcs' own progress, warnings of the libraries); `--log_level info` or
`debug` shows everything transformers and datasets log.
"""

from __future__ import annotations

import argparse
import dataclasses
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

from .config import TCSConfig, count_or_share
from .data import DataArguments
from .distributed import check_launch, end_process_group
from .hub import HubPublishingError
from .jobs import ModelCardArguments, PrecomputeArguments, PushArguments, distill, precompute, push
from .models import StudentArguments
from .version import __version__

__all__ = ["COMMANDS", "TCSArgumentParser", "command_parser", "main", "run"]

logger = logging.getLogger(__name__)

_EPILOG = """\
Every argument of a command can also come from --config FILE.yaml; the command line overrides the file.
`hf-tcs COMMAND -h` lists the hf_tcs arguments and the common training ones, `hf-tcs COMMAND --help` all of them.

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
    """Keeps the layout of descriptions, shows every default, and names each option once.

    `HfArgumentParser` also accepts `--dashed-names` for every `--underscored_name`; listing both doubles the help.
    """

    def _format_action_invocation(self, action: argparse.Action) -> str:
        options = [option for option in action.option_strings if "-" not in option.lstrip("-")]
        if not options or len(options) == len(action.option_strings):
            return super()._format_action_invocation(action)
        shown = argparse.Action(options, action.dest, action.nargs, metavar=action.metavar)
        return super()._format_action_invocation(shown)


class TCSArgumentParser(HfArgumentParser):
    """`HfArgumentParser` with `--config FILE.yaml` (TRL's `TrlParser` convention) and one-line errors.

    The YAML file maps argument names to values and sets the defaults; the command line overrides them.
    """

    # Fields whose command-line value needs hf_tcs' own reading (HfArgumentParser would read "1" as the float 1.0).
    _FIELD_TYPES = {"tcs_num_components": count_or_share}

    def __init__(self, dataclass_types=None, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        # argparse would read `--max_train_sample 5` as `--max_train_samples 5` without a word.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(dataclass_types, **kwargs)
        for action in self._actions:
            if action.dest in self._FIELD_TYPES:
                action.type = _argument_type(self._FIELD_TYPES[action.dest])
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
        namespace, remaining = self.parse_known_args(args)
        if remaining:
            self.error(f"unrecognized arguments: {' '.join(remaining)}")
        outputs = self.parse_args_into_dataclasses(args, look_for_args_file=False)
        if getattr(namespace, "output_dir", "") is None:
            # TrainingArguments would write to ./trainer_output, where the next job would mix its files in.
            self.error("--output_dir is required: the folder this job writes its results to")
        count = len(self.dataclass_types)
        extra = vars(outputs[count]) if len(outputs) > count else {}
        extra.pop("config", None)
        return tuple(outputs[:count]), extra

    def _read_config(self, path: str) -> dict[str, Any]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--config {path}: no such file.")
        try:
            values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or error
            raise ValueError(f"--config {path} is not valid YAML{where}: {problem}.") from None
        if not isinstance(values, dict):
            raise ValueError(f"--config {path} must hold a mapping of argument names to values.")
        actions = {action.dest: action for action in self._actions if action.dest not in ("help", "config")}
        unknown = sorted(set(values) - set(actions))
        if unknown:
            raise ValueError(f"--config {path} sets unknown arguments {unknown}: see `{self.prog} --help`.")
        return {key: _config_value(path, key, value, actions[key]) for key, value in values.items()}


def _argument_type(read: Callable[[str], Any]) -> Callable[[str], Any]:
    """`read` as an argparse type: its ValueError message is shown as it is, not as "invalid <read> value"."""

    def convert(text: str) -> Any:
        try:
            return read(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = read.__name__
    return convert


def _config_value(path: str, key: str, value: Any, action: argparse.Action) -> Any:
    """A YAML value checked (and read) as the command line would read it: a wrong type names the file and key.

    argparse never converts a non-string default, so without this a list for a float field, or a string for a number,
    would reach the dataclass (or the job) as it is.
    """
    convert = action.type
    if value is None or convert is None or convert is str:
        return value  # free text (str fields, and the str-or-dict fields TrainingArguments reads itself)
    items = value if action.nargs in ("+", "*") and isinstance(value, list) else [value]
    try:
        for item in items:
            if isinstance(item, dict | list):
                raise ValueError("a mapping or a list")
            if isinstance(item, bool) and convert in (int, float):
                raise ValueError("a boolean")
            if convert is int and isinstance(item, float) and not item.is_integer():
                raise ValueError("not a whole number")
        converted = [convert(item) for item in items]
        if action.choices is not None and any(item not in action.choices for item in converted):
            raise ValueError(f"use one of {list(action.choices)}")
    except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
        expected = {int: "an integer", float: "a number"}.get(convert, "valid")
        message = f"--config {path}: {key}: {value!r} is not {expected} ({error}); fix it in the file."
        raise ValueError(message) from None
    return converted if isinstance(value, list) else converted[0]


@dataclass(frozen=True)
class Command:
    """A subcommand: the job it runs, the dataclasses its arguments fill (in the job's order), and its help.

    `config_fields`, when set, are the only `TCSConfig` fields the job reads: the others are neither listed nor
    accepted (they keep their defaults).
    """

    job: Callable[..., Any]
    dataclass_types: tuple[type, ...]
    summary: str
    help: str
    usage: str = "%(prog)s [--config FILE.yaml] [options]"
    positionals: tuple[tuple[str, dict[str, str]], ...] = ()
    config_fields: tuple[str, ...] | None = None


# What `jobs.precompute` reads of its TCSConfig: the teacher pass, the coordinate system, where it saves and pushes,
# seeds, device, logging and the launcher's process settings.
_PRECOMPUTE_FIELDS = (
    *(name for name in TCSConfig.__dataclass_fields__ if name.startswith("teacher_")),
    *("tcs_num_components", "tcs_feature_column", "tcs_coordinate_column"),
    *("output_dir", "push_to_hub", "hub_token", "hub_private_repo", "hub_revision", "seed", "data_seed", "use_cpu"),
    *("log_level", "log_level_replica", "log_on_each_node", "ddp_backend", "ddp_timeout", "local_rank"),
)


COMMANDS = {
    "precompute": Command(
        precompute,
        (DataArguments, PrecomputeArguments, TCSConfig),
        "teacher pass + coordinate system of a dataset, saved (and pushed as a Hub dataset)",
        "Run the teacher once over a dataset and fit the coordinate system: save the dataset with teacher features "
        "and coordinates (save_to_disk) and the coordinate system (tcs/) to --output_dir, and push them as a Hub "
        "dataset with --push_to_hub --hub_dataset_id.",
        config_fields=_PRECOMPUTE_FIELDS,
    ),
    "distill": Command(
        distill,
        (DataArguments, StudentArguments, TCSConfig, ModelCardArguments),
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
    kwargs.setdefault("epilog", _COMMAND_EPILOG)
    parser = TCSArgumentParser(command.dataclass_types, add_help=False, **kwargs)
    for argument, options in command.positionals:
        parser.add_argument(argument, **options)
    if command.config_fields is not None:
        _drop_config_arguments(parser, set(command.config_fields))
    _group_arguments(parser)
    parser.set_defaults(**(defaults or {}))
    return parser


_COMMAND_EPILOG = (
    "-h lists the hf_tcs arguments and the common training ones; --help lists every argument. Any of them can come "
    "from --config FILE.yaml; the command line overrides the file."
)

# The groups of a command's help, hf_tcs' own first, and the TrainingArguments that `-h` shows too.
_GROUPS = {
    "data": "Which dataset, splits and columns.",
    "teacher": "The teacher pass (skipped when the dataset already has teacher features or coordinates).",
    "coordinates and loss": "The coordinate system, the TCS loss and tailoring.",
    "student": "The student model and its inputs.",
    "publishing": "Where the result goes on the Hub, and what its card says.",
    "training": "transformers' TrainingArguments (`--help` lists all of them).",
}
_COMMON_TRAINING_ARGUMENTS = {
    *("output_dir", "num_train_epochs", "max_steps", "per_device_train_batch_size", "per_device_eval_batch_size"),
    *("learning_rate", "eval_strategy", "save_strategy", "seed", "use_cpu", "bf16", "resume_from_checkpoint"),
    *("push_to_hub", "hub_model_id", "report_to", "log_level"),
}


class _HelpAction(argparse.Action):
    """`--help` prints every argument; `-h` only hf_tcs' own and the common training ones (as `git` does)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None, full=True):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)
        self.full = full

    def __call__(self, parser, namespace, values, option_string=None):
        hidden = []
        if not self.full:
            for group in parser._action_groups:
                if group.title == "training":
                    hidden = [a for a in group._group_actions if a.dest not in _COMMON_TRAINING_ARGUMENTS]
        saved = [action.help for action in hidden]
        for action in hidden:
            action.help = argparse.SUPPRESS
        try:
            parser.print_help()
        finally:
            for action, text in zip(hidden, saved, strict=True):
                action.help = text
        if hidden:
            print(f"\n{len(hidden)} more training arguments: see `{parser.prog} --help`.")
        parser.exit()


def _topic(dest: str, owner: type) -> str:
    """The help group of an argument, from the dataclass that owns it and its name."""
    if owner is DataArguments:
        return "data"
    if owner is StudentArguments:
        return "student"
    if owner is ModelCardArguments:
        return "publishing"
    if not issubclass(owner, TrainingArguments):
        return "publishing"
    if dest.startswith("teacher_"):
        return "teacher"
    return "coordinates and loss" if dest.startswith("tcs_") else "training"


def _group_arguments(parser: TCSArgumentParser) -> None:
    """Move the dataclass arguments into topic groups, in `_GROUPS`' order, after -h/--help and --config."""
    owners = {f.name: cls for cls in parser.dataclass_types for f in dataclasses.fields(cls)}
    groups = {title: parser.add_argument_group(title, description) for title, description in _GROUPS.items()}
    for action in list(parser._optionals._group_actions):
        if action.dest in owners:
            parser._optionals._group_actions.remove(action)
            groups[_topic(action.dest, owners[action.dest])]._group_actions.append(action)
    parser._optionals.add_argument("-h", action=_HelpAction, full=False, help="Show the main arguments and exit.")
    parser._optionals.add_argument("--help", action=_HelpAction, help="Show every argument and exit.")
    # -h / --help first among the options, as argparse puts them.
    parser._optionals._group_actions.sort(key=lambda action: not isinstance(action, _HelpAction))
    for group in groups.values():
        if not group._group_actions:
            parser._action_groups.remove(group)


def _drop_config_arguments(parser: TCSArgumentParser, keep: set[str]) -> None:
    """Remove the TCSConfig arguments a command does not read, from its help and from what it accepts.

    They keep their defaults (as parser defaults), so that the config is still built from a complete namespace.
    """
    config_fields = {f.name for f in dataclasses.fields(TCSConfig)}
    defaults = {}
    for action in list(parser._actions):
        if action.dest in config_fields and action.dest not in keep:
            defaults.setdefault(action.dest, action.default)  # the field's own action comes before its --no_ twin
            parser._remove_action(action)
            for group in parser._action_groups:
                if action in group._group_actions:
                    group._group_actions.remove(action)
            for option in action.option_strings:
                parser._option_string_actions.pop(option, None)
    parser.set_defaults(**defaults)


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
        commands.add_parser(name, help=command.summary, add_help=False, allow_abbrev=False)
    return parser


def setup_logging(args: TrainingArguments) -> None:
    """Quiet by default: hf_tcs' own progress on the main process, and only the warnings of the libraries.

    `--log_level info` (or `debug`) sets every library's level, so that the configs, cache hits and the rest that
    transformers and datasets log come back; replicas log at `--log_level_replica` (warnings by default).
    """
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = args.get_process_log_level()  # "passive": transformers' own verbosity, warnings unless set otherwise
    chosen = args.log_level != "passive" if args.should_log else args.log_level_replica != "passive"
    logging.getLogger("hf_tcs").setLevel(level if chosen or not args.should_log else logging.INFO)
    datasets.utils.logging.set_verbosity(level)
    # datasets prints through a handler of its own: propagating to the root handler as well would print twice.
    datasets.utils.logging.disable_propagation()
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
    end_process_group()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `hf-tcs` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # The first argument picks the command (or asks for help / the version); the command's parser reads the rest.
    name = _top_parser().parse_args(argv[:1]).command
    return run(COMMANDS[name].job, command_parser(name), argv[1:])


if __name__ == "__main__":
    sys.exit(main())
