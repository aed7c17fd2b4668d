"""The options several commands share: the common flags, the network and config, the data
file and its layout, a study's likelihood settings, and the study they make together."""

import argparse

from ..data.io import CONVENTIONS, parse_choice_codes, parse_columns, read_study
from ..model.designs import NAMED_DESIGNS
from ..model.settings import SettingOptions, prepare_study

__all__ = ["CHECKPOINT_HELP", "CONFIG_HELP", "DEFAULT_CHECKPOINT", "DEFAULT_CONFIG", "NAMED_DESIGN_HELP",
           "NUTS_STORE_HELP", "add_checkpoint", "add_command", "add_config", "add_data_options",
           "add_settings_options", "common_options", "prepared_study"]

DEFAULT_CONFIG = "default"  # the shipped config and network, found by name (amortized_rlddm.resources)
DEFAULT_CHECKPOINT = "default"
CONFIG_HELP = "a YAML config, or the name of a shipped one (default: %(default)s)"
CHECKPOINT_HELP = "a checkpoint directory, or the name of a shipped network (default: %(default)s)"
NUTS_STORE_HELP = ("a folder keeping each NUTS fit, reused when the same data are fitted with the same "
                   "settings again (another network's check, an interrupted run)")
NAMED_DESIGN_HELP = ("a named design (amortized_rlddm.model.designs) to simulate and infer with its settings; "
                     "a general network needs one (default: the network's own design)")


def common_options() -> argparse.ArgumentParser:
    """The parent parser of every command: the options all of them take."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars or training progress")
    return common


def add_command(subparsers, common, name, func, help):
    """A command's parser, with the common options, run by `func(args)`; its help is also the
    description its own --help shows."""
    parser = subparsers.add_parser(name, parents=[common], help=help, description=help)
    parser.set_defaults(func=func, prog=parser.prog)
    return parser


def add_checkpoint(parser, default=DEFAULT_CHECKPOINT, help=CHECKPOINT_HELP):
    """--checkpoint: the network a command uses."""
    parser.add_argument("--checkpoint", default=default, help=help)


def add_config(parser, default=DEFAULT_CONFIG):
    """--config: the config a command simulates or trains from."""
    parser.add_argument("--config", default=default, help=CONFIG_HELP)


def add_data_options(parser, required=True):
    """--data and its layout: a convention, or a column mapping with choice codes."""
    parser.add_argument("--data", required=required, help="a data CSV")
    parser.add_argument("--convention", default="rlddm", choices=list(CONVENTIONS))
    parser.add_argument("--columns", help="another layout: ours=theirs pairs, e.g. "
                                          "participant=subj_idx,choice=c,rt=rt,reward=r,block=s (docs/data.md)")
    parser.add_argument("--choice-codes", help="with --columns: file:ours choice codes, e.g. 1:0,2:1")
    parser.add_argument("--reward-codes", help="with --columns: file:ours reward codes, e.g. 100:1,0:0 for outcomes "
                                               "in points")
    parser.add_argument("--missing-rewards", choices=["refuse", "ignore"], default="refuse",
                        help="with --columns: a reward recorded on a missing response is refused (default) or, with "
                             "ignore, not an outcome (e.g. 0 points for a timeout)")
    parser.add_argument("--trials-within", choices=["participant", "condition"],
                        help="with --columns: what the trial column counts within")


def add_settings_options(parser, hddm=False):
    """The likelihood settings of a study, its exclusions and --design (read by
    prepared_study); with `hddm`, the help names --hddm-compatible's defaults."""
    parser.add_argument("--missing", choices=["deadline", "ignorable"], help="what missing responses are")
    parser.add_argument("--deadline", type=float,
                        help="the response deadline in seconds (implies --missing deadline)")
    parser.add_argument("--q-init", type=float, help="initial Q-values (default: the data's q_init column, else 0.5)")
    parser.add_argument("--p-outlier", type=float, help="probability of a contaminant response (default 0"
                                                        + ("; 0.05 with --hddm-compatible)" if hddm else ")"))
    parser.add_argument("--rt-max", type=float, help="contaminant RTs are uniform on [0, rt-max] s (default 10"
                                                     + ("; 5 with --hddm-compatible)" if hddm else ")"))
    parser.add_argument("--min-rt", type=float, help="exclude responses faster than this (s) from the likelihood")
    parser.add_argument("--exclude-first", action="store_true",
                        help="exclude each participant's first trial of every pair from the likelihood "
                             "(HDDM's convention)")
    parser.add_argument("--design", choices=sorted(NAMED_DESIGNS),
                        help="a named design's settings instead of --deadline, --missing, --q-init, --p-outlier, "
                             "--rt-max (and its exclusions)")


def _read_data(args):
    """The study of --data, read with --convention, or with --columns (and --choice-codes,
    --reward-codes, --missing-rewards, --trials-within) for another layout (which a convention
    refuses)."""
    codes = None if args.choice_codes is None else parse_choice_codes(args.choice_codes)
    rewards = None if args.reward_codes is None else parse_choice_codes(args.reward_codes, "--reward-codes",
                                                                           "100:1,0:0")
    columns = None if args.columns is None else parse_columns(args.columns)
    return read_study(args.data, convention=args.convention, columns=columns, choice_codes=codes,
                      reward_codes=rewards, trials_within=args.trials_within, missing_rewards=args.missing_rewards)


def prepared_study(args, base):
    """The study of --data, its likelihood settings and exclusions as the options say
    (amortized_rlddm.model.settings.prepare_study: the same for every command); `base`: the
    settings where the options give none."""
    return prepare_study(_read_data(args), SettingOptions.from_namespace(args), base)
