"""The TensorRT Python API this project uses, checked against TensorRT releases without TensorRT.

TensorRT itself cannot be installed on the project's machines, but its Python bindings can be
read. A ``tensorrt-cuXX-bindings`` wheel (about 1.2 MB) holds

* ``tensorrt_bindings/tensorrt.so``: a pybind11 extension. Every class, enum value, method,
  property and keyword-argument name it registers is a NUL-terminated C string in the ELF
  ``.rodata`` section, so the names can be read without loading it (loading needs libnvinfer);
* ``tensorrt_bindings/__init__.py``: pure-Python additions (``__version__``, helpers).

:class:`BindingsNames` reads both; :func:`find_uses` reads the TensorRT names a Python source
file uses (module attributes such as ``trt.BuilderFlag.FP16``, methods and properties of
TensorRT objects, keyword arguments, overridden callbacks); :func:`check` says which uses a
release lacks.

Limits of reading strings, and how they are handled:

1. **Tail merging.** The linker stores a string that is the tail of a longer one only once
   ("Builder" lives inside "IBuilder\\0"), so :meth:`BindingsNames.has` accepts the tail of
   any string.
2. **No scoping.** The strings say that "INT8" exists, not in which enum. ``BuilderFlag.INT8``
   was removed in TensorRT 11 but "INT8" is still the tail of "UINT8" (``DataType.UINT8``);
   ``BuilderFlag.STRONGLY_TYPED`` never existed but ``NetworkDefinitionCreationFlag`` has a
   ``STRONGLY_TYPED``. Such names are listed by hand in :data:`BLIND_SPOTS`, with the releases
   that lack them (from NVIDIA's TensorRT 10.x -> 11.x migration guide and the
   ``py::enum_<BuilderFlag>`` lists of NVIDIA/TensorRT ``python/src/infer/pyCore.cpp``). A test
   keeps that list minimal: every entry must be one the string check gets wrong.
3. **No signatures or behaviour.** A present name may still take other arguments or behave
   differently (``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is 1 in 10.x and 0 in 11.x).
   Only a real build on a GPU checks that.
4. **What the walker sees.** :func:`find_uses` follows TensorRT objects inside one file: a
   value is a TensorRT object when it comes from the module (``trt.Builder(...)``), from
   another TensorRT object (``builder.create_network(...)``), or is annotated with a TensorRT
   class (``parser: tensorrt.OnnxParser``; class-level ``engine: tensorrt.ICudaEngine`` covers
   ``self.engine``). The module is any name bound by ``import tensorrt``, a parameter named
   ``trt``, a name assigned from a call of ``import_tensorrt()``, or ``self._trt``. An object
   returned by a project function and not annotated is not followed, nor is
   ``getattr(obj, variable)``.

The x86-64 wheels are read for every release; the JetPack builds of the same version come from
the same sources (the names are assumed to be the same).
"""

from __future__ import annotations

import ast
import bisect
import re
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

# ----------------------------------------------------------------------------- wheel contents

_PRINTABLE_TAIL = re.compile(rb"[\x20-\x7e]{2,}\Z")
_SHT_NOBITS = 8


def elf_section(data: bytes, name: str) -> bytes:
    """The bytes of section ``name`` of a 64-bit little-endian ELF file.

    Raises:
        ValueError: not a 64-bit little-endian ELF file, or no such section with contents.
    """
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_off, names_size = headers[shstrndx][4], headers[shstrndx][5]
    names = data[names_off : names_off + names_size]
    for name_off, sh_type, _flags, _addr, offset, size, *_ in headers:
        section = names[name_off : names.index(b"\0", name_off)].decode("ascii")
        if section == name and sh_type != _SHT_NOBITS:
            return data[offset : offset + size]
    raise ValueError(f"no {name} section")


def c_strings(blob: bytes) -> set[str]:
    """Printable ASCII strings of 2+ characters that end with a NUL byte in ``blob``."""
    out = set()
    for chunk in blob.split(b"\0"):
        m = _PRINTABLE_TAIL.search(chunk)
        if m:
            out.add(m.group().decode("ascii"))
    return out


def python_names(source: str) -> set[str]:
    """Names bound at the top level of a Python module (assignments, functions, classes)."""
    out = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            out.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return out


class BindingsNames:
    """The names one TensorRT Python bindings build defines.

    Args:
        strings: NUL-terminated strings of ``tensorrt.so``'s ``.rodata``.
        python: names bound by ``tensorrt_bindings/__init__.py``.
        version: the build's ``__version__`` (e.g. ``"10.3.0"``).
    """

    def __init__(self, strings: set[str], python: set[str], version: str):
        self.strings = frozenset(strings)
        self.python = frozenset(python)
        self.version = version
        self._reversed = sorted(s[::-1] for s in self.strings)

    @classmethod
    def from_wheel(cls, path: str | Path) -> BindingsNames:
        """Read a ``tensorrt-cuXX-bindings`` wheel.

        Raises:
            ValueError: the wheel has no ``tensorrt_bindings/tensorrt.so`` or no version.
        """
        with zipfile.ZipFile(path) as z:
            members = z.namelist()
            so = [n for n in members if n.endswith("tensorrt_bindings/tensorrt.so")]
            init = [n for n in members if n.endswith("tensorrt_bindings/__init__.py")]
            if not so or not init:
                raise ValueError(f"{path}: not a TensorRT bindings wheel")
            rodata = elf_section(z.read(so[0]), ".rodata")
            init_source = z.read(init[0]).decode("utf-8")
        m = re.search(r"^__version__ = \"([0-9.]+)\"", init_source, re.M)
        if m is None:
            raise ValueError(f"{path}: no __version__ in tensorrt_bindings/__init__.py")
        return cls(c_strings(rodata), python_names(init_source), m.group(1))

    @property
    def major_minor(self) -> tuple[int, int]:
        major, minor = self.version.split(".")[:2]
        return int(major), int(minor)

    def has(self, name: str) -> bool:
        """``name`` is one of the strings, the tail of one, or a name of ``__init__.py``."""
        if name in self.strings or name in self.python:
            return True
        rev = name[::-1]
        i = bisect.bisect_left(self._reversed, rev)
        return i < len(self._reversed) and self._reversed[i].startswith(rev)

    def has_all(self, dotted: str) -> bool:
        """Every component of ``"BuilderFlag.FP16"`` passes :meth:`has` (not scoped)."""
        return all(self.has(part) for part in dotted.split("."))


# ----------------------------------------------------------------------------- blind spots


@dataclass(frozen=True)
class BlindSpot:
    """A name the string check accepts although a release lacks it.

    Attributes:
        absent_from: first (major, minor) release without it; None = never existed.
        why: which other name makes its strings present.
    """

    absent_from: tuple[int, int] | None
    why: str

    def absent_in(self, major_minor: tuple[int, int]) -> bool:
        return self.absent_from is None or major_minor >= self.absent_from


#: Names whose strings survive in releases that lack them (see the module docstring, limit 2).
#: Sources: NVIDIA "TensorRT 10.x to 11.x Python API" migration guide (weakly typed precision
#: flags removed in 11.0) and the BuilderFlag values bound in NVIDIA/TensorRT
#: python/src/infer/pyCore.cpp at v10.3.0, v10.13.0 and v11.1.
BLIND_SPOTS: dict[str, BlindSpot] = {
    "BuilderFlag.INT8": BlindSpot((11, 0), "'INT8' is the tail of DataType 'UINT8'"),
    "BuilderFlag.BF16": BlindSpot((11, 0), "DataType.BF16 exists"),
    "BuilderFlag.FP8": BlindSpot((11, 0), "DataType.FP8 exists"),
    "BuilderFlag.INT4": BlindSpot((11, 0), "DataType.INT4 exists"),
    "BuilderFlag.FP4": BlindSpot((11, 0), "DataType.FP4 exists"),
    "BuilderFlag.STRONGLY_TYPED": BlindSpot(
        None, "NetworkDefinitionCreationFlag.STRONGLY_TYPED exists"
    ),
}


# ----------------------------------------------------------------------------- source uses


@dataclass(frozen=True)
class Use:
    """One TensorRT name used by a source file.

    Attributes:
        name: ``"BuilderFlag.FP16"`` (kind ``module``: attribute path below the module),
            ``"create_network"`` (``member`` of a TensorRT object), ``"ignore_mismatch"``
            (``keyword`` argument of a TensorRT call), ``"ILogger.log"`` (``override``: a
            method of a subclass of a TensorRT class, called by TensorRT by name).
        kind: ``module``, ``member``, ``keyword`` or ``override``.
        file, line: where.
        optional: the same function tests the name with ``hasattr``/``getattr``.
    """

    name: str
    kind: str
    file: str
    line: int
    optional: bool = False

    def __str__(self) -> str:
        text = {
            "module": f"trt.{self.name}",
            "member": f".{self.name}",
            "keyword": f"{self.name}=",
            "override": f"override {self.name}",
        }[self.kind]
        return f"{self.file}:{self.line}: {text}"


def _dotted(node: ast.AST) -> str | None:
    """``"a.b.c"`` for a pure Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef)


class _Walker:
    """:func:`find_uses` for one parsed file (see the module docstring, limit 4)."""

    def __init__(self, tree: ast.Module, file: str):
        self.tree = tree
        self.file = file
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.modules: set[str] = {"self._trt"}
        self.aliases: dict[str, str] = {}
        self.uses: set[Use] = set()
        self._find_module_names()

    # ---------------------------------------------------------------- the module and aliases
    def _find_module_names(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                self.modules.update(a.asname or a.name for a in node.names if a.name == "tensorrt")
            elif isinstance(node, ast.arg) and node.arg == "trt":
                self.modules.add("trt")
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                callee = _dotted(node.value.func) or ""
                if callee.split(".")[-1] == "import_tensorrt":
                    self.modules.update(t.id for t in node.targets if isinstance(t, ast.Name))
        for _ in range(2):  # tuple assignments of the module (trt, torch = self._trt, ...)
            for node in ast.walk(self.tree):
                if isinstance(node, ast.Assign):
                    for target, value in self._pairs(node):
                        path = self.module_path(value)
                        if not isinstance(target, ast.Name) or path is None:
                            continue  # config.flag = trt.X.Y is a use, not an alias
                        if path == "":
                            self.modules.add(target.id)
                        else:  # sev = trt.ILogger.Severity
                            self.aliases[target.id] = path

    @staticmethod
    def _pairs(node: ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                yield from zip(target.elts, node.value.elts)
            elif not isinstance(target, ast.Tuple):
                yield target, node.value

    def module_path(self, node: ast.AST) -> str | None:
        """Path below the module ("" = the module itself) of a pure chain, else None."""
        dotted = _dotted(node)
        if dotted is None:
            return None
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            head, rest = ".".join(parts[:i]), parts[i:]
            if head in self.modules:
                return ".".join(rest)
            if head in self.aliases:
                return ".".join([self.aliases[head], *rest])
        return None

    # ---------------------------------------------------------------- objects
    def _tainted(self, node: ast.AST, objects: set[str]) -> bool:
        """Is ``node`` the TensorRT module or a TensorRT object?"""
        if self.module_path(node) is not None:
            return True
        dotted = _dotted(node)
        if dotted is not None and dotted in objects:
            return True
        if isinstance(node, ast.Attribute | ast.Subscript):
            return self._tainted(node.value, objects)
        if isinstance(node, ast.Call):
            return self._tainted(node.func, objects)
        return False

    def _annotation_path(self, annotation: ast.AST | None) -> str | None:
        if annotation is None:
            return None
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            annotation = ast.parse(annotation.value, mode="eval").body
        path = self.module_path(annotation)
        return path or None

    def _class_objects(self, cls: ast.ClassDef) -> set[str]:
        out = set()
        for item in cls.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                path = self._annotation_path(item.annotation)
                if path:
                    out.add(f"self.{item.target.id}")
                    self._add(path, "module", item)
        return out

    def _scope_objects(self, fn: ast.AST, inherited: set[str]) -> set[str]:
        objects = set(inherited)
        args = fn.args
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            path = self._annotation_path(a.annotation)
            if path:
                objects.add(a.arg)
                self._add(path, "module", a)
        assigns = [n for n in self._own_nodes(fn) if isinstance(n, ast.Assign | ast.AnnAssign)]
        changed = True
        while changed:  # order-insensitive: a fixpoint over the function's assignments
            changed = False
            for node in assigns:
                if isinstance(node, ast.AnnAssign):
                    path = self._annotation_path(node.annotation)
                    pairs = [(node.target, node.value)]
                    if path:
                        self._add(path, "module", node)
                else:
                    path, pairs = None, list(self._pairs(node))
                for target, value in pairs:
                    name = _dotted(target)
                    if name is None or name in objects or self.module_path(target) is not None:
                        continue
                    if path or (value is not None and self._tainted(value, objects)):
                        objects.add(name)
                        changed = True
        return objects

    def _own_nodes(self, scope: ast.AST):
        """Nodes of ``scope`` outside nested functions and classes."""
        stack = list(ast.iter_child_nodes(scope))
        while stack:
            node = stack.pop()
            yield node
            if not isinstance(node, (*_SCOPES, ast.ClassDef)):
                stack.extend(ast.iter_child_nodes(node))

    # ---------------------------------------------------------------- uses
    def _add(self, name: str, kind: str, node: ast.AST, optional: bool = False) -> None:
        self.uses.add(Use(name, kind, self.file, getattr(node, "lineno", 0), optional))

    def _collect(self, scope: ast.AST, objects: set[str]) -> None:
        found: list[Use] = []
        guarded: set[str] = set()
        for node in self._own_nodes(scope):
            if isinstance(node, ast.Attribute):
                parent = self.parents.get(node)
                path = self.module_path(node)
                if path:
                    if not (isinstance(parent, ast.Attribute) and self.module_path(parent)):
                        found.append(Use(path, "module", self.file, node.lineno))
                elif self._tainted(node.value, objects) and not self.module_path(node.value):
                    found.append(Use(node.attr, "member", self.file, node.lineno))
            elif isinstance(node, ast.Call):
                callee = _dotted(node.func)
                if (
                    callee in ("hasattr", "getattr")
                    and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str)
                    and self._tainted(node.args[0], objects)
                ):
                    attr = node.args[1].value
                    guarded.add(attr)
                    base = self.module_path(node.args[0])
                    if base is not None:
                        found.append(
                            Use(f"{base}.{attr}".lstrip("."), "module", self.file, node.lineno)
                        )
                    else:
                        found.append(Use(attr, "member", self.file, node.lineno))
                elif self._tainted(node.func, objects):
                    for kw in node.keywords:
                        if kw.arg is not None:
                            found.append(Use(kw.arg, "keyword", self.file, node.lineno))
            elif isinstance(node, ast.ClassDef):
                for base in node.bases:
                    path = self.module_path(base)
                    if path:
                        for item in node.body:
                            if isinstance(item, _SCOPES) and not item.name.startswith("__"):
                                found.append(
                                    Use(f"{path}.{item.name}", "override", self.file, item.lineno)
                                )
        for use in found:
            last = use.name.split(".")[-1]
            self.uses.add(Use(use.name, use.kind, use.file, use.line, last in guarded))

    def walk(self, scope: ast.AST | None = None, objects: frozenset[str] = frozenset()) -> None:
        scope = scope or self.tree
        own = set(objects)
        if isinstance(scope, _SCOPES):
            own = self._scope_objects(scope, own)
        elif isinstance(scope, ast.ClassDef):
            own |= self._class_objects(scope)
        self._collect(scope, own)
        for node in self._own_nodes(scope):
            if isinstance(node, (*_SCOPES, ast.ClassDef)):
                self.walk(node, frozenset(own))


def find_uses(source: str, file: str = "<source>") -> list[Use]:
    """The TensorRT names ``source`` uses, sorted by file position.

    Args:
        source: Python source text.
        file: name used in :class:`Use` (e.g. a path relative to the repository).

    Returns:
        One :class:`Use` per (name, kind, line, optional).

    Raises:
        SyntaxError: ``source`` does not parse.
    """
    walker = _Walker(ast.parse(source, file), file)
    walker.walk()
    return sorted(walker.uses, key=lambda u: (u.file, u.line, u.kind, u.name))


def check(uses: list[Use], names: BindingsNames) -> list[str]:
    """Required (not ``hasattr``/``getattr``-guarded) uses that release ``names`` lacks.

    A use is missing when one of its name's components fails :meth:`BindingsNames.has`, or
    when its module path is a :data:`BLIND_SPOTS` entry absent from that release.

    Returns:
        One message per missing use: ``"<file>:<line>: trt.BuilderFlag.FP16 is not in TensorRT
        11.4.0.106"`` (sorted, empty when everything is there).
    """
    out = []
    for use in uses:
        if use.optional:
            continue
        spot = BLIND_SPOTS.get(use.name) if use.kind == "module" else None
        if spot is not None and spot.absent_in(names.major_minor):
            out.append(f"{use} is not in TensorRT {names.version} ({spot.why})")
        elif not names.has_all(use.name):
            out.append(f"{use} is not in TensorRT {names.version}")
    return sorted(out)


# ----------------------------------------------------------------------------- downloads


class WheelUnavailable(RuntimeError):
    """A bindings wheel is neither cached nor downloadable (the message says why)."""


def bindings_wheel(requirement: str, directory: Path, timeout_s: float = 15.0) -> Path:
    """The wheel for ``requirement`` (``"tensorrt-cu12-bindings==10.3.0"``) in ``directory``.

    Downloaded with pip on first use (CPython 3.11 manylinux x86-64 build, no dependencies,
    one attempt with a ``timeout_s`` connection timeout) and reused afterwards.

    Raises:
        WheelUnavailable: pip failed (no registry access...); the message has pip's last lines.
    """
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    cached = sorted(directory.glob(pattern))
    if cached:
        return cached[0]
    directory.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", "3.11", "--implementation", "cp",
        "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
        "--timeout", str(timeout_s), "--retries", "0", "--disable-pip-version-check",
        "--quiet", "--dest", str(directory), requirement,
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise WheelUnavailable(f"pip download {requirement} took more than 120 s") from None
    cached = sorted(directory.glob(pattern))
    if proc.returncode != 0 or not cached:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise WheelUnavailable(
            f"pip download {requirement} failed (exit {proc.returncode}): {tail}"
        )
    return cached[0]
