"""The README stays short, and everything it names exists: every `ssp` command and the flags used with it, every
`section.key` config key in backticks, every repository path, every Makefile target and every docs/ link. The
docs/ pages are held to the same checks (all but the length)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from ssp.cli import build_parser
from ssp.config import describe
from ssp.tree import SSPConfig

REPO = Path(__file__).resolve().parents[1]
SSP = r"(?:(?<=bin/)|(?<![\w/.-]))ssp ([a-z][\w-]*)"  # `ssp X` or `.venv/bin/ssp X`, not `ssp-rl` or `/ssp`
README = (REPO / "README.md").read_text()
MAX_LINES = 170
PATH_ROOTS = ("configs", "data", "docs", "k8s", "benchmarks", "tests")
FILE_EXTS = {"json", "jsonl", "png", "md", "csv", "yaml", "yml", "py", "sh", "gz", "txt", "parquet", "html", "pdf"}


def code_spans(text: str) -> list[str]:
    """Every line of a fenced block, and every inline `code` span of the other lines."""
    spans, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            spans.append(line)
        else:
            spans += re.findall(r"`([^`\n]+)`", line)
    return spans


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


COMMANDS = subcommands(build_parser())


def invocations(text: str) -> list[tuple[str, list[str], str]]:
    """(command, words after it, where) for each `ssp COMMAND ...` in the code spans; `cluster/jobs/submit.sh
    [--no-wait] STAGE ...` runs `ssp STAGE ...`, so it counts as one. A segment ends at the next `ssp`, at a
    shell comment, a closing parenthesis or a backtick."""
    out = []
    for span in code_spans(text):
        span = re.sub(r"(?:cluster/jobs/)?submit\.sh (?:\[?--no-wait\]? )?(?=[a-z])", "ssp ", span)
        matches = list(re.finditer(SSP, span))
        for m, nxt in zip(matches, [*matches[1:], None]):
            rest = span[m.end(): nxt.start() if nxt else len(span)]
            rest = re.split(r"\s#|\)|`", rest)[0]
            out.append((m.group(1), rest.split(), span))
    return out


def test_the_readme_is_short():
    n = len(README.splitlines())
    assert n < MAX_LINES, f"README.md has {n} lines; reference material goes to docs/"


# The README, and the docs pages it sends readers to, are held to the same checks.
PAGES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]


def text_of(page: str) -> str:
    return (REPO / page).read_text()


@pytest.mark.parametrize("page", PAGES)
def test_every_ssp_command_named_exists(page):
    named = set(re.findall(SSP, text_of(page)))
    assert named or page != "README.md", "the README names no ssp command"
    assert named <= set(COMMANDS), f"{page}: not commands of `ssp`: {sorted(named - set(COMMANDS))}"


@pytest.mark.parametrize("page", PAGES)
def test_every_flag_used_with_a_command_exists_for_it(page):
    bad = []
    for cmd, words, where in invocations(text_of(page)):
        if cmd not in COMMANDS:
            continue  # reported by the test above
        parser = COMMANDS[cmd]
        for w in words:  # a nested command (`ssp scheduler stats`) has its own flags
            nested = subcommands(parser)
            if w in nested:
                parser = nested[w]
                break
        options = set(parser._option_string_actions)
        for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", " ".join(words)):
            if flag not in options:
                bad.append(f"ssp {cmd} {flag}  (in: {where.strip()})")
    assert not bad, f"{page}: flags the commands do not have:\n" + "\n".join(bad)


def config_keys() -> set[str]:
    return {key for key, _, _ in describe(SSPConfig)}


def named_keys(text: str, sections: set[str]) -> set[str]:
    """`section.key` tokens (also as `key=value` or `key:`) in the code spans; file names (`eval.jsonl`) and
    module paths (`python -m cluster.env`) are not keys."""
    found = set()
    for span in code_spans(text):
        words = re.split(r"[\s,;()\[\]{}|`'\"]+", span)
        for prev, word in zip(["", *words], words):
            m = re.fullmatch(r"([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)(?:[=:].*)?", word)
            if not m or prev == "-m":
                continue
            parts = m.group(1).split(".")
            if parts[0] in sections and parts[-1] not in FILE_EXTS:
                found.add(m.group(1))
    return found


@pytest.mark.parametrize("page", PAGES)
def test_every_config_key_named_exists(page):
    keys = config_keys()
    sections = {k.split(".")[0] for k in keys if "." in k}
    named = named_keys(text_of(page), sections)
    assert named or page != "README.md", "the README names no config key"
    # a key, or a section holding keys (`learner.loss`)
    missing = sorted(k for k in named if k not in keys and not any(x.startswith(k + ".") for x in keys))
    assert not missing, f"{page}: not keys of `ssp config --keys`: {missing}"


def repo_paths(text: str) -> set[str]:
    root = "|".join(PATH_ROOTS)
    return {m.rstrip("/.") for m in re.findall(rf"(?<![\w/.~$-])((?:{root})/(?:[\w.*-]+/?)*)", text)}


@pytest.mark.parametrize("page", PAGES)
def test_every_repository_path_named_exists(page):
    named = repo_paths(text_of(page))
    assert named or page != "README.md"
    missing = sorted(p for p in named if not (list(REPO.glob(p)) if "*" in p else (REPO / p).exists()))
    assert not missing, f"{page}: paths named that are not in the repository: {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_every_make_target_named_exists(page):
    makefile = (REPO / "Makefile").read_text()
    targets = {t for span in code_spans(text_of(page)) for t in re.findall(r"(?<![\w-])make ([a-z][\w-]*)", span)}
    assert {"demo", "test"} <= targets or page != "README.md"
    missing = sorted(t for t in targets if f"\n{t}:" not in makefile)
    assert not missing, f"{page}: not Makefile targets: {missing}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"\s", "-", text)


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#+\s+(.*)$", text, flags=re.M)}


def links(page: Path) -> list[tuple[Path, str]]:
    """(target file, anchor) of each relative Markdown link to a .md file."""
    out = []
    for target, anchor in re.findall(r"\]\(([\w./-]+\.md)(?:#([\w-]+))?\)", page.read_text()):
        out.append(((page.parent / target).resolve(), anchor))
    return out


@pytest.mark.parametrize("page", PAGES)
def test_every_markdown_link_resolves(page):
    bad = []
    for target, anchor in links(REPO / page):
        if not target.is_file():
            bad.append(f"{target.relative_to(REPO)}: no such file")
        elif anchor and anchor not in anchors(target):
            bad.append(f"{target.relative_to(REPO)}#{anchor}: no such heading")
    assert not bad, f"{page}: " + "; ".join(bad)


def test_the_readme_links_every_docs_page():
    linked = {t for t, _ in links(REPO / "README.md")}
    pages = {p.resolve() for p in (REPO / "docs").glob("*.md")}
    assert pages <= linked, f"docs pages the README does not link: {sorted(p.name for p in pages - linked)}"


def test_benchmarks_opens_with_the_current_figures():
    text = (REPO / "BENCHMARKS.md").read_text()
    first = re.search(r"^## (.*)$", text, flags=re.M)
    assert first and first.group(1).startswith("Current figures"), "BENCHMARKS.md: the first section is not 'Current figures'"


# ---------------------------------------------------------------- every example parses
# Every `ssp ...` example in the README, docs/, the Makefile and the scripts (cluster/jobs, benchmarks) is parsed
# by the CLI's own parser, and every key=value in it is a config key: an example a user copies runs.
SCRIPTS = ["Makefile", *sorted(str(p.relative_to(REPO)) for p in [*(REPO / "cluster/jobs").glob("*.sh"),
                                                                  *(REPO / "benchmarks").glob("*.sh")])]
CALL = re.compile(r"(?:bin/ssp\"?|-m ssp\.cli|(?<![\w/.$-])ssp) ([a-z][\w-]*)")


def calls(lines: list[str]) -> list[tuple[str, str, str]]:
    """(command, the rest of the command line, the line) for each `ssp CMD`, `python -m ssp.cli CMD` or
    `$(VENV)/bin/ssp CMD`; the rest ends at a pipe, a redirection, `;`, `&&`, a comment or a backtick."""
    out = []
    for line in lines:
        line = re.sub(r"(?:^|\s)\[(?:--|key=|\.\.\.)[^\]]*\]", " ", line)  # a usage line's optional parts
        ms = list(CALL.finditer(line))
        for m, nxt in zip(ms, [*ms[1:], None]):
            rest = re.split(r"\s#|\s\||\s>|;|&&|`|\)$", line[m.end(): nxt.start() if nxt else len(line)])[0]
            out.append((m.group(1), rest, line.strip()))
    return out


def script_lines(text: str) -> list[str]:
    text = text.replace("\\\n", " ")
    return [ln.split(" #")[0] for ln in text.splitlines() if not ln.lstrip().startswith("#") and "echo" not in ln]


def argv_of(rest: str) -> list[str]:
    """The example's words as the parser gets them: shell quoting undone, a variable as a value, a usage line's
    optional parts (`[--k K]`, `[key=value ...]`) left out, its placeholders (RUN_DIR, N) and alternatives
    (`up|status|down`) given a value."""
    import shlex

    rest = re.sub(r"\"\$\{\w+\[@\]\}\"", " ", rest)  # "${ARR[@]}": more overrides, checked where ARR is set
    rest = re.sub(r"\$\{[^}]*\}|\$\([^)]*\)|\$\w+", "x", rest)
    try:
        words = shlex.split(rest)
    except ValueError:
        words = rest.split()
    return ["1" if re.fullmatch(r"[A-Z][A-Z0-9_]*|N|K", w) else w.split("|")[0] if "|" in w and "=" not in w
            else w for w in words]


EXAMPLES = [(page, cmd, rest, where) for page in PAGES for cmd, rest, where in calls(code_spans(text_of(page)))] + [
    (page, cmd, rest, where) for page in SCRIPTS for cmd, rest, where in calls(script_lines(text_of(page)))]


def test_the_examples_are_found():
    pages = {page for page, _, rest, _ in EXAMPLES if rest.strip()}
    assert {"README.md", "Makefile", "cluster/jobs/k8s_stages.sh", "benchmarks/gpu_smoke.sh",
            "docs/cli.md"} <= pages, pages
    assert sum(bool(rest.strip()) for _, _, rest, _ in EXAMPLES) > 40


@pytest.mark.parametrize("page", sorted({page for page, *_ in EXAMPLES}))
def test_every_example_parses_and_names_only_real_keys(page):
    from ssp.cli import parse

    keys = config_keys()
    bad = []
    for _page, cmd, rest, where in (e for e in EXAMPLES if e[0] == page):
        if cmd not in COMMANDS or not rest.strip():
            continue  # `ssp export` in a sentence names the command; it is no example
        argv = argv_of(rest)
        try:
            args = parse([cmd, *argv])
        except SystemExit:
            bad.append(f"does not parse: ssp {cmd} {' '.join(argv)}  (in: {where})")
            continue
        for override in getattr(args, "overrides", []) or []:
            key = override.split("=", 1)[0]
            if key not in keys and not any(k.startswith(key + ".") for k in keys) and not (
                    cmd == "verify" and "verifier." + key in keys):
                bad.append(f"no config key {key!r}: ssp {cmd}  (in: {where})")
    assert not bad, f"{page}:\n" + "\n".join(bad)
