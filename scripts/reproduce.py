"""Reduced-scale reproduction of the paper's Tables 1-3 on CIFAR-10, with a report.

    python scripts/reproduce.py --protocol=v4 --settings=uniform40 --seeds=0,1,2,3,4 \
        --methods=base,mwnet,mnwnet,rmnwnet,rmnwnet_gce,gce,oracle   # v4's planned uniform 40% cells, then the report
    python scripts/reproduce.py --protocol=v4 --settings=uniform40 --seeds=0,1,2,3,4 \
        --methods=base,mwnet,mnwnet,rmnwnet,rmnwnet_gce,gce,oracle --max_cells=1   # one of them this sitting
    python scripts/reproduce.py --report_only      # just rebuild results/REPRODUCTION.md
    python scripts/reproduce.py --protocol=v3 --report_only      # v3's report, results/v3/REPRODUCTION.md
    python scripts/reproduce.py --protocol=v3 --settings=uniform40 --methods=rmnwnet --meta_step=head \
        --runs_dir=results/runs_v3_head --out_dir=results/v3/v3_cheap_head   # a variant, summarised in v3's report

Runs go to --runs_dir/<setting>/<method>/seed<k>/ and resume where they stopped; the report
(reproduction.json, REPRODUCTION.md, plots/ in the protocol's report folder) covers the protocol's
planned grid (`Family.plan`) and every other cell with a run. Without --settings, --methods and
--seeds this runs the paper's four methods in every setting, which is no protocol's plan: each
report's *Commands* lists one command per planned setting.
Protocols v1, v2 and v2.1 are retired: `git checkout study-v2.1` runs them (BUILD_NOTES.md).
Every protocol value can be overridden (e.g. for a smoke test), and the report says so.
The logic lives in the experiments/reproduction/ package (outside the installed rmwnet_tf).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys

# experiments/ sits beside rmwnet_tf/ in the repository and is not installed with the wheel;
# `python scripts/reproduce.py` puts only scripts/ on sys.path, so add the repository root.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app, flags, logging  # noqa: E402

from experiments import reproduction  # noqa: E402
from experiments.reproduction.report import progress_counts  # noqa: E402
from rmwnet_tf import flags as flags_lib  # noqa: E402
from rmwnet_tf.config import Config  # noqa: E402

_CONFIG_FIELDS = {field.name: field for field in dataclasses.fields(Config)}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The job's own flags, plus one override flag per protocol field (unset: keep the protocol's)."""
    flags.DEFINE_enum("protocol", reproduction.CURRENT, list(reproduction.PROTOCOLS),
                      "The protocol whose values the override flags below start from (each pretrains its "
                      "classifier once first).", flag_values=flag_values)
    flags.DEFINE_string("settings", ",".join(s.name for s in reproduction.SETTINGS),
                        "Comma-separated settings to run, in this order.", flag_values=flag_values)
    flags.DEFINE_string("methods", ",".join(reproduction.METHOD_ORDER), "Comma-separated methods to run.",
                        flag_values=flag_values)
    flags.DEFINE_string("seeds", None, "Comma-separated seeds (default: " + "; ".join(
                        f"{','.join(map(str, p.seeds))} for {name}" for name, p in reproduction.PROTOCOLS.items())
                        + ").",
                        flag_values=flag_values)
    flags.DEFINE_integer("max_cells", None, "Stop after this many newly run cells (default: all).",
                         lower_bound=0, flag_values=flag_values)
    flags.DEFINE_string("out_dir", None, "Where reproduction.json, REPRODUCTION.md and plots/ go (default: " + ", ".join(
                        f"{p.out_dir} for {name}" for name, p in reproduction.PROTOCOLS.items()) + ").",
                        flag_values=flag_values)
    flags.DEFINE_string("runs_dir", None, "Where the runs go: <runs_dir>/<setting>/<method>/seed<k>/ (default: " + ", ".join(
                        f"{p.runs_dir} for {name}" for name, p in reproduction.PROTOCOLS.items()) + ").",
                        flag_values=flag_values)
    flags.DEFINE_bool("report_only", False, "Only rebuild the report from the runs on disk.",
                      flag_values=flag_values)
    current = reproduction.PROTOCOLS[reproduction.CURRENT]
    for name in current.config:
        help_text = f"Protocol override (default {current.config[name]!r} for {current.name}): " \
                    f"{_CONFIG_FIELDS[name].metadata.get('help', '')}"
        flags_lib.define_field_flag(_CONFIG_FIELDS[name], None, help_text, flag_values)
    flags.DEFINE_bool("base_holds_out_meta", None, "Protocol override (default True): methods without a meta set "
                      "(Base, GCE, the oracle) leave out the meta set a meta method would take, so all train on "
                      "the same images.", flag_values=flag_values)


def _override_names() -> list[str]:
    """Every protocol value a flag can override: its Config values, and whether Base holds the meta set out."""
    return [*reproduction.PROTOCOLS[reproduction.CURRENT].config, "base_holds_out_meta"]


def protocol_from_flags(flag_values: flags.FlagValues) -> reproduction.Protocol:
    return reproduction.protocol_with({name: flag_values[name].value for name in _override_names()},
                                      base=reproduction.PROTOCOLS[flag_values.protocol])


def run(flag_values: flags.FlagValues, argv: list[str], run_fn=None) -> int:
    """Everything after flag parsing; returns the exit status (2: bad request, nothing done)."""
    try:
        settings = reproduction.parse_settings(flag_values.settings)
        methods = reproduction.parse_methods(flag_values.methods)
        protocol = protocol_from_flags(flag_values)
        seeds = reproduction.parse_seeds(flag_values.seeds or ",".join(map(str, protocol.seeds)))
        outcome = reproduction.reproduce(
            settings=settings, methods=methods, seeds=seeds, protocol=protocol,
            runs_dir=flag_values.runs_dir, out_dir=flag_values.out_dir, max_cells=flag_values.max_cells,
            report_only=flag_values.report_only, command=reproduction.command_line(argv), run_fn=run_fn,
        )
    except reproduction.ProtocolError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        if any(problem.startswith("--data_dir") for problem in error.problems):
            print("hint: unpack the CIFAR-10 JPEG copy into data/cifar10 (README.md, *Training on CIFAR*), "
                  "or pass --dataset=cifar10 with internet", file=sys.stderr)
        return 2
    except (ValueError, reproduction.StaleRunError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        checkpointing = sys.modules.get("rmwnet_tf.checkpointing")
        if checkpointing and isinstance(error, checkpointing.Interrupted):  # SIGTERM / Ctrl-C mid-cell
            print(f"{error}; the same reproduce.py command resumes the grid there", file=sys.stderr)
            return error.exit_code
        raise
    _print_summary(outcome, protocol)
    return 0


def _print_summary(outcome: reproduction.Outcome, protocol: reproduction.Protocol) -> None:
    if outcome.tally is not None:
        tally = outcome.tally
        print(f"cells: {len(tally.newly_run)} run now, {len(tally.already_done)} already finished, "
              f"{len(tally.left)} left for later")
    done, planned, outside = progress_counts(outcome.entries, protocol.family)
    print(f"report: {outcome.report_path} ({done} of {planned} planned cells finished"
          + (f"; {len(outside)} outside the plan)" if outside else ")"))
    for result in outcome.claims:
        print(f"  claim {result.claim.number}: {result.verdict} ({result.coverage})")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(run(flags.FLAGS, sys.argv[1:]))


if __name__ == "__main__":
    define_flags()
    logging.set_verbosity(logging.INFO)
    app.run(main)
