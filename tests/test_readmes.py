"""What the READMEs tell a user to type exists: commands, options, config keys, folders.

Every `kapps …` line in a code block of every README is parsed: its command
must be one of the CLI's, its `--options` that command's, its `key=value`
overrides keys of the config schema, and the competition or module it names
must be in the tree. A placeholder (`<slug>`, `…`) stands for anything.
"""

import re
import shlex

import pytest
import typer

from pipelines.cli import app
from pipelines.config import check_tunable_key
from tests.conftest import REPO

READMES = sorted(
    [REPO / "README.md", *REPO.glob("*/README.md"), *REPO.glob("competitions/*/README.md")]
)
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)


def _code_lines(path):
    for block in FENCE.findall(path.read_text()):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line:
                yield line


def _commands():
    return {
        command.name: {
            opt
            for param in command.params
            for opt in (*param.opts, *param.secondary_opts)
            if opt.startswith("--")
        }
        for command in typer.main.get_command(app).commands.values()
    }


def _placeholder(word):
    return any(mark in word for mark in "<>…[]|")


def _problems(line, commands):
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    if words[:3] == ["python", "-m", "pytest"] or words[:2] == ["lint-imports"]:
        return []
    if words[:2] == ["python", "-m"]:
        module = words[2].replace(".", "/")
        found = (REPO / f"{module}.py").is_file() or (REPO / module).is_dir()
        return [] if found else [f"no module {words[2]}"]
    if words[0] != "kapps":
        return []
    words = words[1:]
    if words and words[0] == "--verbose":
        words = words[1:]
    if not words or words[0] not in commands:
        return [f"no command {words[:1]}"]
    command, problems = words[0], []
    for word in words[1:]:
        if _placeholder(word):
            continue
        if word.startswith("--"):
            if word.split("=")[0] not in commands[command]:
                problems.append(f"kapps {command} has no option {word}")
        elif "=" in word:
            try:
                check_tunable_key(word.split("=")[0], "README", tunable=False)
            except ValueError as err:
                problems.append(str(err))
        elif word.startswith("competitions/") and not (REPO / word).exists():
            problems.append(f"no file or folder {word}")  # a competition, an override file
    return problems


@pytest.mark.parametrize("path", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_command_lines_name_what_exists(path):
    commands = _commands()
    problems = [
        f"{line!r}: {problem}"
        for line in _code_lines(path)
        for problem in _problems(line, commands)
    ]
    assert not problems, "\n".join(problems)


TOP_FOLDERS = ("kapps/", "pipelines/", "competitions/", "tests/", "benchmarks/", "notebooks/")
PATH_IN_TICKS = re.compile(rf"`((?:{'|'.join(map(re.escape, TOP_FOLDERS))})[^`\s]*)`")


@pytest.mark.parametrize("path", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_files_the_prose_names_exist(path):
    # A competition's data/ is made by `kapps prepare` or filled by the user.
    found = PATH_IN_TICKS.findall(path.read_text())
    named = {p for p in found if not _placeholder(p) and "/data/" not in p}
    missing = sorted(p for p in named if not (REPO / p.rstrip("/")).exists())
    assert not missing, missing


def test_the_checker_catches_what_does_not_exist():
    commands = _commands()
    assert _problems("kapps trian competitions/digits", commands)
    assert _problems("kapps run competitions/digits train.epoch=3", commands)
    assert _problems("kapps run competitions/nothing-here", commands)
    assert _problems("kapps tune competitions/digits --trails 5", commands)
    assert _problems("python -m benchmarks.nothing", commands)
    assert not _problems("kapps tune competitions/digits --trials 40", commands)


def test_the_python_in_the_top_readme_runs():
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_the_top_readme_is_short_and_has_the_guides():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for heading in ("## Add a model", "## Add a competition", "## Use the builders"):
        assert heading in text


def test_the_layout_the_readme_shows_matches_the_tree():
    text = (REPO / "README.md").read_text()
    layout = FENCE.findall(text)[-1]
    named = [line.split()[0] for line in layout.splitlines() if line.strip()]
    assert named, layout
    for folder in named:
        assert (REPO / folder).is_dir(), folder
    assert not any(p.is_dir() for p in (REPO / "tests").iterdir() if p.name != "__pycache__")
