"""What Lambda runs, laid out on this machine, and a probe that imports a handler from it.

* the layer, built by ``layers/shared/Makefile`` exactly as ``sam build`` runs it (optionally for this host's
  platform, so that its native modules load here; only the wheels' ``.so`` files and metadata differ);
* a runtime-like site: boto3 and its dependencies (botocore, s3transfer, jmespath, urllib3, python-dateutil,
  six) precompiled, as the python3.13 runtime ships them, and nothing else;
* zips made as ``sam package`` makes them (every entry dated 1980-01-01) and extracted with those dates, so a
  timestamp-based ``.pyc`` is as stale here as it is on Lambda;
* :func:`probe_imports`: a fresh ``python -I -S -B`` (no ``PYTHON*`` variables, no site, no bytecode written)
  with Lambda's ``sys.path`` order (function dir, layer, runtime site) that times the imports and counts, per
  root, the modules loaded from bytecode and those compiled from source.

Used by ``tests/infrastructure`` (the built layer's invariants) and by ``make bench`` (cold start of the artifact).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "layers" / "shared"
FUNCTIONS_DIR = ROOT / "functions"
# Every handler (functions/<name>/<name>.py): each must import from the built layer, compiling nothing.
FUNCTIONS = tuple(sorted(p.name for p in FUNCTIONS_DIR.iterdir() if (p / f"{p.name}.py").is_file()))
CACHE = ROOT / "build" / "artifact"
# Top-level import names of what the Lambda python runtime provides (boto3 and its dependencies).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six")
LAMBDA_PLATFORM = "manylinux2014_aarch64"  # template.yaml: arm64 everywhere
LAYER_LIMIT_BYTES = 20_000_000  # unzipped; Lambda's own limit is 250 MB
# Never in the layer: what the runtime provides, and PyYAML (no function imports it).
FORBIDDEN_IN_LAYER = (*RUNTIME_PROVIDED, "yaml", "_yaml", "PyYAML", "python_dateutil")
MAGIC_313 = (3571).to_bytes(2, "little") + b"\r\n"  # importlib.util.MAGIC_NUMBER of every CPython 3.13.x
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # zipfile.ZipInfo's default date, which SAM's packager keeps
_ZIP_EPOCH_SECONDS = 315_532_800  # 1980-01-01T00:00:00Z


def python313() -> str | None:
    """A CPython 3.13 interpreter (the runtime's version), found as the layer build finds it, or None."""
    found = subprocess.run(
        [str(SHARED / "find-python3.13")], capture_output=True, text=True, check=False, timeout=60
    ).stdout.strip()
    return found or None


def base_python() -> str:
    """This interpreter outside its virtualenv (the probes must not see the development packages)."""
    return str(getattr(sys, "_base_executable", sys.executable))


def host_platform() -> str:
    return f"manylinux2014_{platform.machine()}"


def build_layer(
    destination: Path,
    *,
    platform_tag: str = LAMBDA_PLATFORM,
    python313: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Build the SharedLayer into ``destination`` with its Makefile; returns what the build printed on stdout.

    ``python313``: None finds one as ``sam build`` does; "" builds without one (which fails unless ``env`` holds
    ``FLAGBRIDGE_LAYER_WITHOUT_BYTECODE=1``). ``env``: variables added to this process's environment.
    """
    destination.mkdir(parents=True, exist_ok=True)
    command = ["make", "-s", "-C", str(SHARED), "build-SharedLayer", f"ARTIFACTS_DIR={destination}"]
    command += [f"PYTHON={sys.executable}", f"PLATFORM={platform_tag}"]
    if python313 is not None:
        command.append(f"PYTHON313={python313}")
    completed = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=600, env={**os.environ, **(env or {})}
    )
    if completed.returncode != 0:
        raise RuntimeError(f"layer build failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return completed.stdout


def unzipped_bytes(directory: Path) -> int:
    """Sum of the file sizes under ``directory`` (what Lambda counts against the unzipped limit)."""
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file() and not path.is_symlink())


def forbidden_in_layer(layer: Path) -> list[str]:
    """Top-level entries of the layer's python/ that the runtime provides or no function needs."""
    found = []
    for entry in sorted((layer / "python").iterdir()):
        name = entry.name.removesuffix(".py").split("-")[0].lower()
        if name in {forbidden.lower() for forbidden in FORBIDDEN_IN_LAYER}:
            found.append(entry.name)
    return found


def bytecode_problems(layer: Path) -> list[str]:
    """Modules of the layer without hash-based CPython 3.13 bytecode next to them (empty: all is well).

    A timestamp-based .pyc counts as missing: after ``sam package`` (entries dated 1980-01-01) it is stale.
    """
    problems = []
    for source in sorted((layer / "python").rglob("*.py")):
        cached = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        relative = source.relative_to(layer)
        if not cached.is_file():
            problems.append(f"{relative}: no cpython-313 bytecode")
            continue
        header = cached.read_bytes()[:8]
        if header[:4] != MAGIC_313:
            problems.append(f"{relative}: bytecode not written by CPython 3.13")
        elif not int.from_bytes(header[4:8], "little") & 1:
            problems.append(f"{relative}: timestamp-based bytecode (stale once zipped by sam package)")
    return problems


def boto3_requirement() -> str:
    """boto3 as pinned for development (the functions are tested against it; the runtime's own is close)."""
    for line in (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("boto3=="):
            return line.strip()
    return "boto3"


def interpreter_version(executable: str) -> str:
    completed = subprocess.run(
        [executable, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return completed.stdout.strip()


def runtime_site(executable: str) -> Path:
    """``build/artifact/runtime-<python>-<hash>``: boto3 and its dependencies, compiled by ``executable``.

    Installed once per boto3 pin and interpreter version; pure-Python wheels, so any host platform will do.
    """
    version = interpreter_version(executable)
    requirement = boto3_requirement()
    key = hashlib.sha256(requirement.encode()).hexdigest()[:12]
    site = CACHE / f"runtime-{version}-{key}"
    if site.is_dir():
        return site
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="installing-", dir=CACHE))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    command += ["--no-warn-conflicts", "--target", str(staging), "--python-version", version]
    command += ["--implementation", "cp", "--only-binary=:all:", requirement]
    subprocess.run(command, check=True, timeout=600, capture_output=True)
    shutil.rmtree(staging / "bin", ignore_errors=True)
    subprocess.run([executable, "-I", "-m", "compileall", "-q", str(staging)], check=True, timeout=600)
    staging.rename(site)
    return site


def sam_zip(source: Path, zip_path: Path) -> Path:
    """Zip ``source`` as SAM CLI's packager does: deflated, Unix modes, every entry dated 1980-01-01."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, _, files in os.walk(source, followlinks=True):
            for name in sorted(files):
                path = Path(root) / name
                info = zipfile.ZipInfo(str(path.relative_to(source)), date_time=ZIP_EPOCH)
                info.create_system = 3
                info.external_attr = path.stat().st_mode << 16
                archive.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    return zip_path


def extract_zip(zip_path: Path, destination: Path) -> Path:
    """Extract keeping the entries' dates (1980-01-01), as the files appear in /opt and /var/task."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(destination)
    for path in destination.rglob("*"):
        if path.is_file():
            os.utime(path, (_ZIP_EPOCH_SECONDS, _ZIP_EPOCH_SECONDS))
    return destination


def as_deployed(source: Path, destination: Path) -> Path:
    """``source`` after a round trip through a ``sam package``-style zip."""
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        return extract_zip(sam_zip(source, Path(scratch) / "artifact.zip"), destination)


def lambda_environment(function: str, config: Path, task_root: Path) -> dict[str, str]:
    """Environment of a function in Lambda: tracing on (X-Ray), Powertools variables, config from the layer."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_FUNCTION_NAME": f"flagbridge-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_SERVICE_NAME": "flagbridge",
        "POWERTOOLS_METRICS_NAMESPACE": "Flagbridge",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "FLAGBRIDGE_CONFIG": str(config),
    }


# Runs in the probed interpreter (-I -S -B). Counting wraps SourceLoader.source_to_code, which the import system
# calls only when a module has no valid bytecode. The probe imports nothing else before the timed imports.
_PROBE = """
import gc, importlib, sys, time
from importlib import _bootstrap_external
sys.path[:0] = {path!r}
compiled = []
_source_to_code = _bootstrap_external.SourceLoader.source_to_code
def _counting(self, data, path, *args, **kwargs):
    compiled.append(path)
    return _source_to_code(self, data, path, *args, **kwargs)
_bootstrap_external.SourceLoader.source_to_code = _counting
seconds = []
for index, module in enumerate({modules!r}):
    if index and {collector_off_after_first!r}:
        gc.disable()  # as the handlers import (flagbridge.runtime.init_complete)
    started = time.process_time()
    importlib.import_module(module)
    seconds.append(time.process_time() - started)
import json, resource
roots = {roots!r}
def root_of(path):
    return next((name for name, root in roots.items() if path.startswith(root + "/")), "other")
loaded, from_source = {{}}, {{}}
for module in list(sys.modules.values()):
    origin = getattr(getattr(module, "__spec__", None), "origin", None) or ""
    if origin.endswith(".py"):
        loaded[root_of(origin)] = loaded.get(root_of(origin), 0) + 1
for path in compiled:
    from_source[root_of(path)] = from_source.get(root_of(path), 0) + 1
print("PROBE " + json.dumps({{
    "seconds": seconds,
    "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "loaded": loaded,
    "compiled": from_source,
    "top_level": sorted({{name.split(".")[0] for name in sys.modules}}),
}}))
"""


@dataclass(frozen=True)
class ProbeResult:
    """One fresh interpreter's imports: CPU seconds per module, peak RSS, and where the modules came from."""

    seconds: list[float]
    rss_kb: int
    loaded: dict[str, int]  # root name -> modules imported from a .py source (with or without bytecode)
    compiled: dict[str, int]  # root name -> of those, compiled from source (no valid bytecode)
    top_level: list[str]

    def from_bytecode(self, root: str) -> int:
        return self.loaded.get(root, 0) - self.compiled.get(root, 0)


def probe_imports(
    executable: str,
    modules: list[str],
    roots: dict[str, Path],
    *,
    cwd: Path,
    env: dict[str, str],
    collector_off_after_first: bool = False,
) -> ProbeResult:
    """Import ``modules`` in turn in a fresh ``executable -I -S -B`` whose sys.path starts with ``roots`` (in order)."""
    path = [str(root) for root in roots.values()]
    code = _PROBE.format(
        path=path,
        modules=modules,
        collector_off_after_first=collector_off_after_first,
        roots={name: str(root) for name, root in roots.items()},
    )
    completed = subprocess.run(
        [executable, "-I", "-S", "-B", "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("PROBE ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"importing {', '.join(modules)} failed:\n{completed.stderr[-3000:]}")
    data = json.loads(lines[-1][len("PROBE ") :])
    return ProbeResult(
        [float(value) for value in data["seconds"]],
        int(data["rss_kb"]),
        data["loaded"],
        data["compiled"],
        data["top_level"],
    )
