"""The README's commands parse as written, and every relative link of README.md, docs/ and BUILD_NOTES.md
leads to a file and heading (issue 35).

Run for real elsewhere: the *From Python* block (tests/test_examples.py, at tiny sizes). The quick
start's settings and quoted numbers are checked against its measured run (tests/test_presets.py); it
is not run (10 minutes). Here every `python scripts/train.py ...` / `rmwnet-train ...` command of a
code block in README.md and docs/*.md is parsed by the command line's own flag parser and checked by
`Config.problems()`, without training: a data path that is not on this machine (data/cifar10,
my_images, labels.npy) is the one problem allowed. Every `python scripts/reproduce.py ...` command is
parsed by reproduce.py's flags, its settings, methods and seeds too, and v4's planned grid is shown
by the same commands as its report's.
"""

import importlib.util

import pathlib
import re
import shlex

import pytest
from absl import flags

from rmwnet_tf import flagfiles
from rmwnet_tf import flags as flags_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The journal's commands are history (flags of their day); its links, like the docs', must lead somewhere.
LINKED = [*DOCS, ROOT / "BUILD_NOTES.md"]
PROGRAMS = (("python", "scripts/train.py"), ("rmwnet-train",))
REPRODUCE = (("python", "scripts/reproduce.py"),)
# A path the user brings: absent here, it may be reported, and nothing else may.
USER_PATHS = {"data_dir": "is not a folder", "noisy_labels": "does not exist", "init_from": "does not exist"}


def code_lines(text: str) -> list[str]:
    """Lines of the fenced and the indented (4 spaces) code blocks, continuation lines (`\\`) joined."""
    joined, pending, fenced = [], "", False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced, pending = not fenced, ""
            continue
        if not (fenced or line.startswith("    ")):
            pending = ""
            continue
        line = pending + line.strip()
        pending = line[:-1] + " " if line.endswith("\\") else ""
        if not pending:
            joined.append(line)
    return joined


def train_commands(path: pathlib.Path, programs=PROGRAMS) -> list[list[str]]:
    """argv (without the program) of every training command (or other `programs`) in `path`'s code blocks."""
    commands = []
    for line in code_lines(path.read_text()):
        words = shlex.split(line, comments=True)
        for program in programs:
            if tuple(words[:len(program)]) == program:
                commands.append(words[len(program):])
    return commands


COMMANDS = [(path.relative_to(ROOT).as_posix(), argv) for path in DOCS for argv in train_commands(path)]
REPRODUCE_COMMANDS = [(path.relative_to(ROOT).as_posix(), argv) for path in DOCS
                      for argv in train_commands(path, REPRODUCE)]


def test_the_readme_shows_its_commands():
    readme = [argv for name, argv in COMMANDS if name == "README.md"]
    assert len(readme) >= 8, readme  # the extraction finds them: quick start, own data, CIFAR, backbones
    assert ["--flagfile=configs/quickstart.flags"] in readme
    assert ["--preset=quickstart"] in readme  # rmwnet-train from a wheel


@pytest.mark.parametrize("name,argv", COMMANDS, ids=[f"{n}:{' '.join(a)[:60]}" for n, a in COMMANDS])
def test_a_documented_command_parses_and_passes_the_checks(name, argv, monkeypatch):
    monkeypatch.chdir(ROOT)  # the commands run from the clone's root, as the README says
    values = flags.FlagValues()
    flags_lib.define_flags(values)
    values(["prog", *flagfiles.expand(argv)])
    config = flags_lib.config_from_flags(values)
    problems = [(flag, message) for flag, message in config.problems()
                if not (flag in USER_PATHS and USER_PATHS[flag] in message
                        and not pathlib.Path(getattr(config, flag)).exists())]
    assert problems == [], f"{name}: {' '.join(argv)}"


def reproduce_script():
    spec = importlib.util.spec_from_file_location("reproduce_script", ROOT / "scripts" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,argv", REPRODUCE_COMMANDS, ids=[f"{n}:{' '.join(a)[:60]}" for n, a in REPRODUCE_COMMANDS])
def test_a_documented_reproduction_command_parses(name, argv):
    from experiments import reproduction

    script = reproduce_script()
    values = flags.FlagValues()
    script.define_flags(values)
    values(["reproduce.py", *argv])
    protocol = script.protocol_from_flags(values)
    assert reproduction.parse_settings(values.settings) and reproduction.parse_methods(values.methods)
    assert reproduction.parse_seeds(values.seeds or ",".join(map(str, protocol.seeds)))


def test_the_readme_and_the_reproduction_page_run_v4s_planned_grid_as_its_report_does():
    from experiments.reproduction import PROTOCOLS
    from experiments.reproduction.report import grid_commands

    planned = [shlex.split(command)[2:] for command in grid_commands(PROTOCOLS["v4"])]
    assert len(planned) == 3
    for name in ("README.md", "docs/reproduction.md"):
        shown = [argv for where, argv in REPRODUCE_COMMANDS if where == name]
        assert [argv for argv in shown if argv in planned] == planned, name


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: pathlib.Path) -> set[str]:
    found, seen = set(), {}
    fenced = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"#+ (.+)$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


# Moved by the study-path branch (issue 35): v3's report goes to results/v3/ and results/REPRODUCTION.md
# becomes v4's. Until that lands, results/REPRODUCTION.md is still v3's report and links may lead ahead.
V3_REPORT = "results/v3/REPRODUCTION.md"


def v3_report_not_moved_yet() -> bool:
    return (ROOT / "results/REPRODUCTION.md").read_text().startswith("# Reproduction, protocol v3")


@pytest.mark.parametrize("path", LINKED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_to_a_file_and_heading(path):
    broken = []
    prose = re.sub(r"`[^`]*`", "", re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M))
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        destination = (path.parent / file).resolve() if file else path
        if not destination.exists():
            if destination == (ROOT / V3_REPORT).resolve() and v3_report_not_moved_yet():
                continue
            broken.append(target)
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(target)
    assert broken == [], f"{path.relative_to(ROOT)}: links that lead nowhere"
