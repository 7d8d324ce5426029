"""Methods and attributes used on TensorRT objects, checked against one TensorRT version's bindings.

    ../shared/tools/trt-api/trt-python VERSION tools/check_trt_calls.py FILE [FILE ...]

trt-api's check.py checks chains rooted at an imported `tensorrt` (trt.BuilderFlag.FP16). This
adds what it cannot see, run by tools/check_trt_api.sh beside it:
  1. the module under other names: a function parameter named `trt` (the pure build plan takes
     the module as an argument) and a name assigned from `import_tensorrt(...)`;
  2. objects TensorRT returns, known by the names this project gives them (OBJECTS): e.g.
     `config.set_flag`, `self.context.execute_async_v3`, `layer.set_output_type`. A name in
     OBJECTS must hold that class in every file checked: where the bindings document a return type
     (`-> tensorrt.IBuilderConfig`), `config = builder.create_builder_config()` is checked to
     return OBJECTS["config"], and `runtime = trt.Runtime(...)` to build OBJECTS["runtime"]
     (MISMATCH otherwise). Give other things other names.
Output: `MISSING   trt.Class.attr  (file:line)` as check.py prints it (so the same allowlist,
tools/trt_api_allow.txt, applies), `MISMATCH ...` lines, and a summary. Exit 1 on any finding.
"""

from __future__ import annotations

import ast
import re
import sys

import tensorrt as trt

OBJECTS = {
    "builder": "Builder", "network": "INetworkDefinition", "config": "IBuilderConfig", "parser": "OnnxParser",
    "profile": "IOptimizationProfile", "cprofile": "IOptimizationProfile", "runtime": "Runtime", "engine": "ICudaEngine",
    "context": "IExecutionContext", "layer": "ILayer", "timing": "ITimingCache", "cache": "ITimingCache",
    "logger": "Logger",
}
RETURNS = re.compile(r"->\s*(?:tensorrt_bindings\.)?tensorrt\.(\w+)")


def receiver(node):
    """The project name of what `node` (an attribute's value) holds: `config`, `self.context` -> "context"."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
        return node.attr.lstrip("_")  # self._runtime -> "runtime"
    return None


def chain(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id] + parts[::-1]
    return None


def module_aliases(tree):
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name == "tensorrt")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.update(a.arg for a in node.args.args + node.args.kwonlyargs if a.arg == "trt")
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            f = node.value.func
            if isinstance(f, ast.Name) and f.id == "import_tensorrt":
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def returned_class(cls_name, method):
    """The TensorRT class `cls.method(...)` returns, where its docstring says; else None."""
    fn = getattr(getattr(trt, cls_name, None), method, None)
    found = set(RETURNS.findall(getattr(fn, "__doc__", None) or "")) if callable(fn) else set()
    return found.pop() if len(found) == 1 else None


def check(path):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    aliases = module_aliases(tree)
    findings, seen = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts = chain(node)
            if parts and parts[0] in aliases:  # trt.A.B with trt a parameter or import_tensorrt() result
                key = ".".join(["trt"] + parts[1:])
                obj = trt
                for p in parts[1:]:
                    if not hasattr(obj, p):
                        findings.append(("MISSING", key, node.lineno))
                        break
                    obj = getattr(obj, p)
                continue
            cls = OBJECTS.get(receiver(node.value) or "")
            if cls and not hasattr(getattr(trt, cls, None), node.attr):
                findings.append(("MISSING", f"trt.{cls}.{node.attr}", node.lineno))
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            findings += check_assignment(node, aliases)
    out = []
    for kind, what, line in findings:
        if (kind, what) not in seen:
            seen.add((kind, what))
            out.append(f"{kind:<9} {what}  ({path}:{line})")
    return out


def check_assignment(node, aliases):
    """`name = recv.method(...)` / `name = trt.Class(...)`: the result must be what OBJECTS calls `name`."""
    f = node.value.func
    if not isinstance(f, ast.Attribute):
        return []
    made = None
    if isinstance(f.value, ast.Name) and f.value.id in aliases:
        made = f.attr if isinstance(getattr(trt, f.attr, None), type) else None
    else:
        cls = OBJECTS.get(receiver(f.value) or "")
        made = returned_class(cls, f.attr) if cls else None
    out = []
    for target in node.targets:
        name = receiver(target)
        want = OBJECTS.get(name or "")
        if made and want and made != want:
            out.append(("MISMATCH", f"{name} = ...{f.attr}(...) makes trt.{made}, but OBJECTS says {name} is trt.{want}",
                        node.lineno))
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(f"TensorRT {trt.__version__}")
    lines = [line for p in sys.argv[1:] for line in check(p)]
    print("\n".join(lines) if lines else "no findings")
    sys.exit(1 if lines else 0)
