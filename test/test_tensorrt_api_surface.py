"""Every TensorRT name the project uses exists in every supported TensorRT release.

The bindings wheels of the releases in
:data:`joint_perception.runtime.tensorrt_engine.SUPPORTED_TENSORRT` are downloaded with pip on
first use into ``build/trt_wheels/`` (git-ignored; about 1.2 MB each) and read without
TensorRT (``test/tensorrt_surface.py`` explains how, and what a string check cannot see). The
tests skip, naming the reason, when a wheel is neither cached nor downloadable.
"""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path

import pytest
from tensorrt_surface import (
    BLIND_SPOTS,
    BindingsNames,
    WheelUnavailable,
    bindings_wheel,
    check,
    find_uses,
)

from joint_perception.runtime.tensorrt_engine import SUPPORTED_TENSORRT

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / "build" / "trt_wheels"
RELEASES = {r.version: r for r in SUPPORTED_TENSORRT}


@pytest.fixture(scope="module")
def bindings() -> dict[str, BindingsNames]:
    """{release version: its names}; skips when a wheel cannot be had."""
    out = {}
    for version, release in RELEASES.items():
        try:
            wheel = bindings_wheel(release.bindings_wheel, WHEELS)
        except WheelUnavailable as exc:
            pytest.skip(f"TensorRT {version} bindings wheel not cached in {WHEELS}: {exc}")
        out[version] = BindingsNames.from_wheel(wheel)
    return out


@functools.cache
def project_uses() -> tuple:
    """The TensorRT uses of the package. A file that never spells "tensorrt" or "trt" cannot
    reach the module (see ``find_uses``: import, ``import_tensorrt()``, ``trt``, ``self._trt``)."""
    uses = []
    for path in sorted((REPO / "joint_perception").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if "tensorrt" in source or "trt" in source:
            uses += find_uses(source, path.relative_to(REPO).as_posix())
    return tuple(uses)


def test_the_walker_sees_the_engine_build_and_run_calls():
    """The extraction itself (no wheels): the calls the build and run paths cannot do without."""
    found = {(u.kind, u.name) for u in project_uses()}
    expected = {
        ("module", "Builder"),
        ("module", "OnnxParser"),
        ("module", "Runtime"),
        ("module", "NetworkDefinitionCreationFlag.STRONGLY_TYPED"),
        ("module", "MemoryPoolType.WORKSPACE"),
        ("member", "create_network"),
        ("member", "parse_from_file"),
        ("member", "build_serialized_network"),
        ("member", "deserialize_cuda_engine"),
        ("member", "create_execution_context"),
        ("member", "set_tensor_address"),
        ("member", "execute_async_v3"),
        ("member", "desc"),  # through the annotated parser_errors(parser: tensorrt.OnnxParser)
        ("member", "get_tensor_dtype"),  # through TensorRTBackend.engine: tensorrt.ICudaEngine
        ("keyword", "ignore_mismatch"),
        ("override", "ILogger.log"),
        ("override", "IProgressMonitor.step_complete"),
    }
    assert expected <= found, sorted(expected - found)
    assert not {u.name for u in project_uses() if u.kind == "module"} & {
        "BuilderFlag.FP16",
        "BuilderFlag.INT8",
    }


@pytest.mark.parametrize("version", list(RELEASES))
def test_project_uses_only_names_of_each_supported_release(bindings, version):
    uses = list(project_uses())
    assert len(uses) > 50
    problems = check(uses, bindings[version])
    assert problems == [], "\n".join(problems)


def test_guarded_names_exist_in_some_supported_release(bindings):
    """A ``hasattr``/``getattr``-guarded name no supported release has is dead code or a typo."""
    optional = {u.name: u for u in project_uses() if u.optional}
    assert optional  # e.g. HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY (since 10.9)
    nowhere = [
        str(u) for n, u in optional.items() if not any(b.has_all(n) for b in bindings.values())
    ]
    assert nowhere == []


SNIPPET = """\
import tensorrt as trt

def build(logger):
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    {line}
"""


@pytest.mark.parametrize(
    "line, lacking",
    [
        # removed in 11.0: a weakly typed precision flag (the README's desktop path broke here)
        ("config.set_flag(trt.BuilderFlag.FP16)", {"11.4"}),
        # removed in 11.0 too, but 'INT8' is still the tail of 'UINT8': caught by BLIND_SPOTS
        ("config.set_flag(trt.BuilderFlag.INT8)", {"11.4"}),
        # never existed ('STRONGLY_TYPED' is a NetworkDefinitionCreationFlag): BLIND_SPOTS
        ("config.set_flag(trt.BuilderFlag.STRONGLY_TYPED)", {"10.3", "10.13", "11.4"}),
        # implicit INT8 calibration and the platform queries are gone in 11
        ("config.int8_calibrator = trt.IInt8EntropyCalibrator2()", {"11.4"}),
        ("fast = builder.platform_has_fast_fp16", {"11.4"}),
        (
            "builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))",
            {"11.4"},
        ),
        # added in 10.9: JetPack 6's 10.3 lacks it unless the code guards it
        ("level = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY", {"10.3"}),
        ("level = getattr(trt.HardwareCompatibilityLevel, 'SAME_COMPUTE_CAPABILITY', None)", set()),
        # TensorRT 8 API, gone in every supported release
        ("builder.create_network().execute_async_v2([])", {"10.3", "10.13", "11.4"}),
        # a keyword argument is a name too
        ("config.set_timing_cache(None, ignore_mismatches=True)", {"10.3", "10.13", "11.4"}),
        # what the project uses instead: present everywhere
        (
            "builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))",
            set(),
        ),
    ],
)
def test_checker_catches_names_a_release_lacks(bindings, line, lacking):
    uses = find_uses(SNIPPET.format(line=line), "snippet.py")
    failing = {v for v, names in bindings.items() if check(uses, names)}
    assert failing == lacking
    for version in lacking:
        messages = check(uses, bindings[version])
        assert all(m.startswith("snippet.py:6: ") for m in messages), messages
        assert all(f"TensorRT {bindings[version].version}" in m for m in messages), messages


def test_fp16_flag_failure_names_file_line_and_release(bindings):
    source = textwrap.dedent(
        """\
        def build_engine(opts):
            trt = import_tensorrt()
            config = trt.Builder(None).create_builder_config()
            if opts.precision == "fp16":
                config.set_flag(trt.BuilderFlag.FP16)
        """
    )
    uses = find_uses(source, "joint_perception/runtime/tensorrt_engine.py")
    assert check(uses, bindings["11.4"]) == [
        "joint_perception/runtime/tensorrt_engine.py:5: trt.BuilderFlag.FP16 is not in "
        f"TensorRT {bindings['11.4'].version}"
    ]
    assert check(uses, bindings["10.13"]) == []


def test_blind_spots_are_real_names_the_string_check_gets_wrong(bindings):
    """Each hand-kept entry is needed: the strings accept it in a release that lacks it."""
    for name, spot in BLIND_SPOTS.items():
        wrong = [
            v for v, b in bindings.items() if spot.absent_in(b.major_minor) and b.has_all(name)
        ]
        assert wrong, f"{name}: the string check already catches it; drop it from BLIND_SPOTS"
        if spot.absent_from is not None:  # it did exist before it was removed
            assert any(
                b.has_all(name) and not spot.absent_in(b.major_minor) for b in bindings.values()
            ), name


@pytest.mark.parametrize("version", list(RELEASES))
def test_fake_tensorrt_names_are_real(bindings, version):
    """test/fake_tensorrt.py (the build path's stand-in) defines only real names of the
    release it imitates, and lacks the ones that release lacks."""
    from fake_tensorrt import defined_names, make_fake_tensorrt

    names = bindings[version]
    fake = make_fake_tensorrt(names.version)
    defined = defined_names(fake)
    assert len(defined) > 60
    invented = sorted(n for n in defined if not names.has_all(n))
    removed = sorted(
        n for n in defined if n in BLIND_SPOTS and BLIND_SPOTS[n].absent_in(names.major_minor)
    )
    assert invented == [] and removed == []
    assert names.has_all("BuilderFlag.FP16") == hasattr(fake.BuilderFlag, "FP16")
    same_cc = "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"
    assert hasattr(fake.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY") == names.has_all(
        same_cc
    )


def test_supported_releases_are_in_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for release in SUPPORTED_TENSORRT:
        row = f"| {release.version} | {release.platform} | `{release.bindings_wheel}` |"
        assert row in readme, row
