"""Ray for a bare GPU node (benchmarks/ray_bundle.py): the bundle is built under its size,
installed offline into a fresh folder, and a 2-cell `grid launch` on CIFAR-10 files runs
from it in a Python that sees only a torch image's packages and the bundle's.

The first test is slow (xz packs ~150 MB: about 2 minutes on 2 cores, for each of the
bundle's two sources), so the default suite leaves it out: `pytest -m slow` runs it (.ci/run
does); its "wheels" case downloads Ray's wheels from PyPI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.orchestrator.conftest import write_spec
from tests.trainers.conftest import write_fake_cifar10

REPO = Path(__file__).resolve().parents[1]


def image_folder(folder: Path) -> Path:
    """A folder of links to what a torch image has (`ray_bundle.IMAGE` and what they
    require): with `python -S`, the only packages besides the bundle's."""
    from benchmarks import ray_bundle

    folder.mkdir()
    for dist in ray_bundle.closure(list(ray_bundle.IMAGE)).values():
        for top in {f.parts[0] for f in dist.files or [] if not f.as_posix().startswith("..")}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
    return folder


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("source", ["installed", "wheels"])
def test_the_bundle_fits_installs_offline_and_runs_a_two_cell_launch(tmp_path, source):
    # "wheels": built as for another Python (`--python X.Y`, from PyPI's wheels), here for
    # this one, so that the launch below checks what the wheels' unpacking made of Ray
    from benchmarks import ray_bundle

    python = ["--python", f"{sys.version_info.major}.{sys.version_info.minor}"]
    built = subprocess.run(
        [str(REPO / "benchmarks" / "ray_bundle.sh"), str(tmp_path / "out")]
        + (python if source == "wheels" else []),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    bundles = list((tmp_path / "out").glob("ray-bundle-*.tar.xz"))
    assert len(bundles) == 1 and bundles[0].stat().st_size <= ray_bundle.LIMIT_MB * 10**6
    write_fake_cifar10(tmp_path / "data", n_train=200, n_test=50)
    spec = write_spec(
        tmp_path / "specs",
        "bundled",
        [0.02, 0.05],
        dataset={"name": "cifar10", "root": str(tmp_path / "data"), "subset": 128},
        resources={"cpu": 1, "gpu": 0},
        max_failures=0,
    )
    image = image_folder(tmp_path / "image")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(image),
    }
    # `-S`: no site-packages, so the installed Ray here is out of reach; the runner
    # re-executes `grid` with `-S` too (Ray's workers start without it).
    launch = [sys.executable, "-S", "-m", "benchmarks.ray_bundle", "run", str(bundles[0])]
    launch += [str(tmp_path / "ray"), "launch", str(spec), "--store", str(tmp_path / "runs")]
    done = subprocess.run(
        [*launch, "--yes"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "Ray dashboard: not started: this Ray lacks its packages" in out
    assert (tmp_path / "ray" / "site" / "ray" / "tune").is_dir()
    assert not (tmp_path / "ray" / "site" / "ray" / "jars").exists()
    rows = [
        pq.read_table(p).to_pylist()[0]
        for p in (tmp_path / "runs" / "bundled" / "trials").glob("*.parquet")
    ]
    assert sorted(r["status"] for r in rows) == ["completed", "completed"], out[-3000:]


def test_a_bundle_for_another_python_is_refused_with_one_line(tmp_path):
    other = tmp_path / "ray-bundle-2.60.0-cp27-linux_x86_64.tar.xz"
    other.write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.ray_bundle", "run", str(other), str(tmp_path / "r")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not for this Python" in done.stderr


def _wheel(folder: Path, name: str, files: dict[str, tuple[bytes, int]]) -> Path:
    import zipfile

    path = folder / name
    with zipfile.ZipFile(path, "w") as z:
        for arcname, (data, mode) in files.items():
            info = zipfile.ZipInfo(arcname)
            info.external_attr = (0o100000 | mode) << 16
            z.writestr(info, data)
    return path


def test_wheels_for_another_python_unpack_as_pip_installs_them_less_the_dropped_parts(tmp_path):
    # `ray_bundle.sh DIR --python 3.12` downloads the wheels; this is what it makes of them
    import tarfile

    from benchmarks import ray_bundle

    ray = _wheel(
        tmp_path,
        "ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl",
        {
            "ray/__init__.py": (b"", 0o644),
            "ray/core/src/ray/raylet/raylet": (b"\x7fELF", 0o755),
            "ray/jars/ray_dist.jar": (b"jar", 0o644),
            "ray/rllib/__init__.py": (b"", 0o644),
            "ray-2.60.0.dist-info/METADATA": (b"Name: ray", 0o644),
            "ray-2.60.0.data/purelib/ray_extra.py": (b"x = 1", 0o644),
            "ray-2.60.0.data/scripts/ray": (b"#!python", 0o755),
        },
    )
    numpy = _wheel(tmp_path, "numpy-2.2.6-cp312-cp312-manylinux2014_x86_64.whl",
                   {"numpy/__init__.py": (b"", 0o644)})  # fmt: skip
    out = tmp_path / "ray-bundle-2.60.0-cp312-linux_x86_64.tar.xz"
    ray_bundle.pack_wheels([ray, numpy], out, skip={"numpy"})
    with tarfile.open(out) as tar:
        modes = {m.name: m.mode for m in tar}
        assert tar.extractfile("site/ray_extra.py").read() == b"x = 1"
    assert sorted(modes) == [
        "site/ray-2.60.0.dist-info/METADATA",
        "site/ray/__init__.py",
        "site/ray/core/src/ray/raylet/raylet",
        "site/ray_extra.py",
    ]
    assert modes["site/ray/core/src/ray/raylet/raylet"] == 0o755
    assert modes["site/ray/__init__.py"] == 0o644
    assert not out.with_suffix(".part").exists()
