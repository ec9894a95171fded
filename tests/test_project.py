"""Project-level checks: the README's commands match CI, and the pins cover what the test extra installs.

The docs site's strict build is checked in tests/docs (one build, shared by the browser test)."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEST_LINE = 'pip install torch==2.13.0 && pip install -e ".[test]" -c constraints.txt && pytest'


def readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_readme_opens_with_main_job_and_test_command():
    commands = readme_commands()
    assert commands[0].startswith("pip install torch==2.13.0 && ") and "colayers study" in commands[0]
    assert commands[1] == TEST_LINE


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert TEST_LINE in ci
    assert any(line.startswith("python3 -m venv") for line in ci)


def test_constraints_pin_every_distribution_the_test_extra_needs():
    # Every distribution in the closure of colayers[test] (which pulls in study, distributed and docs) has an
    # exact pin in constraints.txt, and the installed version is the pinned one: no release reaches CI unpinned.
    import importlib.metadata as md

    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt line {line!r} is not an exact pin (name==version)"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    assert pins.get("torch") == "2.13.0"

    def requirements(dist, extras):
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras or {""}):
                yield req

    seen, todo = set(), [(md.distribution("colayers"), {"test", "study", "distributed", "docs"})]
    while todo:
        dist, extras = todo.pop()
        for req in requirements(dist, extras):
            name = re.sub(r"[-_.]+", "-", req.name).lower()
            if name == "colayers" or (name, frozenset(req.extras)) in seen:
                continue
            seen.add((name, frozenset(req.extras)))
            assert name in pins, f"{name} (needed by {dist.metadata['Name']}) is not pinned in constraints.txt"
            installed = md.distribution(req.name)
            assert installed.version.split("+")[0] == pins[name].split("+")[0], (
                f"{name}: installed {installed.version}, constraints.txt pins {pins[name]}"
            )
            todo.append((installed, set(req.extras)))


@pytest.mark.parametrize("module", ["colayers", "colayers.perturb", "colayers.oracles"])
def test_public_names_have_docstrings(module):
    mod = __import__(module, fromlist=["__all__"])
    for name in mod.__all__:
        obj = getattr(mod, name)
        assert getattr(obj, "__doc__", None), f"{module}.{name} has no docstring"


def test_a_cuda_only_test_without_the_cuda_marker_stops_collection(tmp_path):
    # tests/conftest.py refuses a test that skips without CUDA but lacks @pytest.mark.cuda (so that
    # `pytest -m cuda` and benchmarks/gpu_check.sh run every CUDA-only test on a GPU machine).
    (tmp_path / "test_markers.py").write_text(
        "import pytest\n"
        "@pytest.mark.skipif(True, reason='needs CUDA')\n"
        "def test_unmarked(): pass\n"
        "@pytest.mark.cuda\n"
        "@pytest.mark.skipif(True, reason='needs CUDA')\n"
        "def test_marked(): pass\n"
        "@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=pytest.mark.skip(reason='no CUDA'))])\n"
        "def test_param(device): pass\n"
        "@pytest.mark.skipif(True, reason='needs scipy')\n"
        "def test_other_skip(): pass\n"
    )
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
           "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), str(tmp_path / "test_markers.py")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "must carry the `cuda` marker" in line]
    assert len(errors) == 1, proc.stdout + proc.stderr
    named = sorted(name.strip().split("::")[-1] for name in errors[0].split("missing on:")[1].split(","))
    assert named == ["test_param[cuda]", "test_unmarked"]
