"""Ray for a bare GPU node (benchmarks/ray_bundle.py): the bundle is built under its size,
installed offline into a fresh folder, and a 2-cell `grid launch` on CIFAR-10 files runs
from it in a Python that sees only a torch image's packages and the bundle's.

The first test is slow (xz packs ~150 MB: about 2 minutes on 2 cores), so the default suite
leaves it out: `pytest -m slow` runs it (.ci/run does)."""

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
def test_the_bundle_fits_installs_offline_and_runs_a_two_cell_launch(tmp_path):
    from benchmarks import ray_bundle

    built = subprocess.run(
        [str(REPO / "benchmarks" / "ray_bundle.sh"), str(tmp_path / "out")],
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
