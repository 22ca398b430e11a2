"""The commands README.md and docs/*.md tell a user to run, and a way for tests to run them as written.

Commands are read from the documents: the lines of ``sh``/``bash``/``console`` blocks (in a block
with ``$`` prompts, only the prompted lines: the rest is output), the ``RUN`` lines of
``dockerfile`` blocks, and inline code in the prose that starts with a program (``admission-host``,
``kubectl``, ``helm``, ``pip``...) and has at least one argument, or names a ``hack/`` script.
``yaml``, ``python`` and untagged blocks (file trees, example output) hold no commands.
tests/unit/test_documented_commands.py holds the table of which test runs each.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SHELL_BLOCKS = {"sh", "bash", "console", "shell"}
PROGRAMS = {"admission-host", "kubectl", "helm", "python", "python3", "pip", "curl", "openssl", "docker",
            "buildah", "podman", "kustomize", "cd", "bash"}

FENCE = re.compile(r"^([ \t]*)```(\w*)[^\n]*\n(.*?)^\1```[ \t]*$", re.S | re.M)
INLINE = re.compile(r"(?<!`)`([^`\n]+(?:\n[^`\n]+)?)`(?!`)")


# -- extraction ---------------------------------------------------------------------------------------------
def _split_comment(line: str) -> Tuple[str, str]:
    """``(code, comment)``: a ``#`` outside quotes that starts a word begins the comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i + 1:]
    return line, ""


def line_commands(text: str) -> List[str]:
    """One shell line (continuations joined) as its commands: ``a && b`` is two, a trailing ``&``
    is dropped, a pipeline stays one; a comment ``# or: CMD`` offers CMD as well."""
    code, comment = _split_comment(text)
    found = [c for c in (" ".join(part.split()) for part in code.split("&&")) if c]
    found = [c[:-2] if c.endswith(" &") else c for c in found]
    alternative = re.match(r"\s*or:\s*(.+)", comment)
    if alternative:
        found += line_commands(alternative.group(1))
    return found


def _joined_lines(block: str) -> List[str]:
    lines, current = [], ""
    for raw in block.splitlines():
        current += raw.strip() if current else raw
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        lines.append(current)
        current = ""
    return lines + ([current] if current else [])


def block_commands(lang: str, body: str) -> List[str]:
    """The commands of one fenced block of language ``lang``."""
    lines = _joined_lines(body)
    if lang == "dockerfile":
        return [c for line in lines if line.split()[:1] == ["RUN"] for c in line_commands(line.split(None, 1)[1])]
    if any(line.startswith("$ ") for line in lines):  # a transcript: only the prompted lines are typed
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    return [c for line in lines if line.strip() for c in line_commands(line)]


def inline_commands(prose: str) -> List[str]:
    """The commands among the inline code spans of ``prose``."""
    found = []
    for m in INLINE.finditer(prose):
        for command in (" ".join(part.split()) for part in m.group(1).split("&&")):
            words = command.split(" ")
            script = re.fullmatch(r"(\./)?hack/\S+\.sh", words[0])
            if script or (len(words) >= 2 and words[0] in PROGRAMS):
                found.append(command)
    return found


@functools.lru_cache(maxsize=None)
def documented_commands() -> Dict[str, List[str]]:
    """Every command the documents tell a user to run -> where (``README.md:12``)."""
    found: Dict[str, List[str]] = {}
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        name = doc.relative_to(ROOT).as_posix()
        for m in FENCE.finditer(text):
            lang, indent = m.group(2), len(m.group(1))
            if lang in SHELL_BLOCKS or lang == "dockerfile":
                body = "\n".join(line[indent:] for line in m.group(3).splitlines())
                line_no = text.count("\n", 0, m.start()) + 1
                for command in block_commands(lang, body):
                    found.setdefault(command, []).append(f"{name}:{line_no}")
        # Blanked out, not removed, so that line numbers stay right.
        prose = FENCE.sub(lambda b: "\n" * b.group(0).count("\n"), text)
        for m in INLINE.finditer(prose):
            line_no = prose.count("\n", 0, m.start()) + 1
            for command in inline_commands(m.group(0)):
                found.setdefault(command, []).append(f"{name}:{line_no}")
    return found


def documented(command: str, *docs: str) -> str:
    """``command`` itself, once checked to be documented (so a test runs what the documents say)."""
    where = documented_commands().get(command)
    assert where, f"not documented (any more?): {command}"
    assert all(any(w.startswith(d + ":") for w in where) for d in docs), (command, where)
    return command


def doc_blocks(doc: str, lang: str) -> List[str]:
    """The bodies of ``doc``'s fenced blocks of ``lang``, dedented, in order."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    return ["\n".join(line[len(m.group(1)):] for line in m.group(3).splitlines()) + "\n"
            for m in FENCE.finditer(text) if m.group(2) == lang]


def run(command: str, *, cwd: Path, replace: Optional[Mapping[str, str]] = None, env: Optional[Mapping[str, str]] = None,
        path: Tuple[str, ...] = (), timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run a documented command with bash in ``cwd``, after the substitutions ``replace`` (a free
    port for a fixed one, a real path for a placeholder); ``path`` goes first on PATH."""
    for old, new in (replace or {}).items():
        assert old in command, (old, command)
        command = command.replace(old, new)
    full_env = dict(os.environ)
    full_env.pop("PYTHONPATH", None)
    full_env.update(env or {})
    full_env["PATH"] = os.pathsep.join([*path, full_env.get("PATH", "")])
    proc = subprocess.run(["bash", "-c", command], cwd=str(cwd), env=full_env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, f"{command}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc
