"""The SharedLayer as ``sam build`` builds it (layers/shared/Makefile), checked on the built files.

* nothing the Lambda runtime provides (boto3 and its dependencies) and no PyYAML;
* hash-based CPython 3.13 bytecode for every module (fails on a machine without a 3.13 interpreter: that layer
  would compile itself at every cold start, about 3x the cost);
* at most 20 MB unzipped;
* every handler imports from the artifact after a ``sam package``-style zip round trip, against a site holding
  only the layer, its function directory and boto3 with its dependencies, in a CPython 3.13 run with
  ``-I -S -B`` (nothing cached between runs), with 0 layer modules compiled from source.

The layer is built here (about 10 s per build; wheels come from pip's cache), once for arm64 as deployed and
once for this host's platform so that its native modules load in the import check.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from local import artifact

PYTHON313 = artifact.python313()
NO_313 = "no CPython 3.13 interpreter found (python3.13 on PATH or pyenv 3.13.x): the layer has no bytecode"


@pytest.fixture(scope="module")
def arm64_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layer = tmp_path_factory.mktemp("layer-arm64")
    artifact.build_layer(layer)
    return layer


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The host-platform layer and the functions as Lambda extracts them, and the runtime-like site."""
    scratch = tmp_path_factory.mktemp("deployed")
    artifact.build_layer(scratch / "built", platform_tag=artifact.host_platform())
    paths = {"layer": artifact.as_deployed(scratch / "built", scratch / "opt")}
    for function in artifact.FUNCTIONS:
        paths[function] = artifact.as_deployed(artifact.FUNCTIONS_DIR / function, scratch / "task" / function)
    paths["runtime"] = artifact.runtime_site(PYTHON313 or artifact.base_python())
    return paths


def test_layer_ships_none_of_the_runtime_packages_nor_pyyaml(arm64_layer: Path) -> None:
    assert artifact.forbidden_in_layer(arm64_layer) == []
    assert (arm64_layer / "config" / "flagbridge.json").is_file()


def test_layer_fits_the_size_budget(arm64_layer: Path) -> None:
    size = artifact.unzipped_bytes(arm64_layer)
    assert size <= artifact.LAYER_LIMIT_BYTES, f"layer is {size / 1e6:.2f} MB unzipped (budget 20 MB)"


def test_layer_ships_hash_based_313_bytecode_for_every_module(arm64_layer: Path) -> None:
    assert PYTHON313, NO_313
    problems = artifact.bytecode_problems(arm64_layer)
    assert problems == [], f"{len(problems)} modules without usable bytecode, e.g. {problems[:5]}"


def test_a_layer_built_without_313_on_purpose_prints_the_cost(tmp_path: Path) -> None:
    """Without 3.13 the build fails (tests/infrastructure/test_build_python313.py); the explicit opt-out builds,
    says on stdout (which `sam build` shows) what it costs, and the check above fails on the result."""
    output = artifact.build_layer(
        tmp_path,
        platform_tag=artifact.host_platform(),
        python313="",
        env={"FLAGBRIDGE_LAYER_WITHOUT_BYTECODE": "1"},
    )
    assert "WARNING: FLAGBRIDGE_LAYER_WITHOUT_BYTECODE=1: the layer ships WITHOUT bytecode" in output
    assert "about 3x the cost" in output
    problems = artifact.bytecode_problems(tmp_path)
    assert any(problem.startswith("python/flagbridge/runtime.py:") for problem in problems)


@pytest.mark.parametrize("function", artifact.FUNCTIONS)
def test_handler_imports_from_the_deployed_artifact_without_compiling(function: str, deployed: dict[str, Path]) -> None:
    layer, task_root = deployed["layer"], deployed[function]
    roots = {"function": task_root, "layer": layer / "python", "runtime": deployed["runtime"]}
    files_before = sorted(task_root.rglob("*"))
    result = artifact.probe_imports(
        PYTHON313 or artifact.base_python(),
        [function],
        roots,
        cwd=task_root,
        env=artifact.lambda_environment(function, layer / "config" / "flagbridge.json", task_root),
    )
    assert result.loaded.get("layer", 0) > 100  # flagbridge, pydantic, Powertools
    assert result.loaded.get("runtime", 0) > 0  # botocore comes from the runtime's site, not the layer
    assert "yaml" not in result.top_level
    assert sorted(task_root.rglob("*")) == files_before, "the probe wrote bytecode"
    assert PYTHON313, NO_313
    assert result.compiled.get("layer", 0) == 0, f"{result.compiled['layer']} layer modules compiled at import"
