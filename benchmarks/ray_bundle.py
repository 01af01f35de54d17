"""Ray for a bare GPU node: the installed `ray` without what a launch never loads, with the
packages Ray needs that a torch image lacks, packed as one `ray-bundle-*.tar.xz` (at most
60 MB), and the one command that installs it offline into a folder and runs `grid` from it.

    benchmarks/ray_bundle.sh DIR                              # build DIR/ray-bundle-*.tar.xz
    benchmarks/ray_bundle.sh DIR --python 3.12                # ... for another Python, from PyPI
    benchmarks/ray_launch.sh BUNDLE FOLDER launch SPEC --yes  # install offline, run grid

A GPU node may have CUDA, torch and the scientific stack but no network and no Ray (the
first H200 had neither). The bundle is built where Ray is installed, for that machine's
Python and platform (Ray's `_raylet.so` is compiled for one: its name says which, and
`ray_launch.sh` refuses another with exit 2): build it with the node's Python version, or,
where this machine has another Python but reaches PyPI, with `--python X.Y`: the same Ray's
wheels for that Python (`pip download`, manylinux x86_64), unpacked into the bundle with the
same parts left out.
Installing is extracting it into FOLDER (`FOLDER/site`); `grid` then runs with
`FOLDER/site` first on PYTHONPATH, which Ray's workers inherit. Nothing else is written.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import sysconfig
import tarfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT_MB = 60  # issue 34: the bundle travels with the checkout
# What a torch image has already (the PyTorch images: torch and its requirements, numpy,
# pillow, torchvision, pyyaml), and what grid itself needs besides Ray (`rich`, `pyarrow`,
# which benchmarks/gpu_check.sh assumes too): left out of the bundle, with everything they
# require. `--with NAME` puts one in all the same.
IMAGE = ("torch", "torchvision", "numpy", "pandas", "pyarrow", "pillow", "pyyaml", "rich")
MODULES = {"pillow": "PIL", "pyyaml": "yaml"}  # import names that are not the package's
# Ray's parts that `grid launch` never imports (Tune, core and the dashboard's files stay):
# the Java jars (33 MB), RLlib, Serve, the LLM library, tests and byte code (ray.air imports
# ray.data, so Data stays).
RAY = "ray[tune]"  # what `grid launch` imports: Ray core and Tune (no dashboard extras)
DROP = ("ray/jars/", "ray/rllib/", "ray/serve/", "ray/llm/", "ray/tests/")


def closure(names: list[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions that the requirements `names` ("ray[tune]") need,
    transitively, with the extras they name."""
    from packaging.requirements import Requirement  # only where the bundle is built

    found: dict[str, metadata.Distribution] = {}
    todo = [Requirement(n) for n in names]
    while todo:
        req = todo.pop()
        key = _key(req.name)
        if key in found and not req.extras:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # an optional requirement not installed here: none on the node either
        found[key] = dist
        extras = [""] + sorted(req.extras)
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(Requirement(sub.name))
    return found


def on_image(extra: tuple[str, ...] = ()) -> set[str]:
    """The distributions the image has (`IMAGE` and what they need, as installed here), less
    those `extra` asks to bundle all the same."""
    asked = set(map(_key, extra))
    return set(closure([n for n in IMAGE if _key(n) not in asked])) - asked


def bundled(extra: tuple[str, ...] = ()) -> dict[str, metadata.Distribution]:
    """What Ray Tune needs (`ray[tune]`), less the image's, plus `extra` and what it needs."""
    image = on_image(extra)
    return {k: d for k, d in closure([RAY, *extra]).items() if k not in image}


def files(dist: metadata.Distribution) -> list[tuple[Path, str]]:
    """(source, name in the bundle's site folder) of `dist`'s installed files (its RECORD),
    less `DROP`, byte code and anything outside site-packages (console scripts)."""
    out = []
    for f in dist.files or []:
        name = f.as_posix()
        if name.startswith("..") or not kept(name):
            continue
        src = Path(dist.locate_file(f))
        if src.is_file():
            out.append((src, name))
    return out


def kept(name: str) -> bool:
    """Whether a file of a distribution goes into the bundle: not `DROP`, not byte code."""
    return not (name.startswith(DROP) or "__pycache__/" in name or name.endswith(".pyc"))


def target() -> str:
    """This Python's tag and platform, as a bundle's name ends: cp311-linux_x86_64."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    return f"{tag}-{sysconfig.get_platform().replace('-', '_').replace('.', '_')}"


def bundle_name() -> str:
    """ray-bundle-<ray version>-<python tag>-<platform>.tar.xz, for the installed Ray."""
    return f"ray-bundle-{metadata.version('ray')}-{target()}.tar.xz"


def build(folder: Path, extra: tuple[str, ...] = ()) -> Path:
    """Write `folder/bundle_name()`; returns its path. GridError-style SystemExit(2) when Ray
    is not installed here; exit 1 when the bundle is over `LIMIT_MB`."""
    try:
        metadata.distribution("ray")
    except metadata.PackageNotFoundError:
        _fail("ray is not installed here: build the bundle where it is (pip install ray)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _fail(f"{folder}: cannot write there ({e.strerror or e})")
    out = folder / bundle_name()
    dists = bundled(extra)
    part = out.with_suffix(".part")
    with tarfile.open(part, "w:xz") as tar:
        for dist in sorted(dists.values(), key=lambda d: _key(d.metadata["Name"])):
            for src, name in files(dist):
                tar.add(src, arcname=f"site/{name}", recursive=False)
    os.replace(part, out)
    return out


def build_for(folder: Path, python: str, extra: tuple[str, ...] = ()) -> Path:
    """Write `folder/ray-bundle-<ray>-cp<XY>-linux_x86_64.tar.xz` for Python `python` ("3.12")
    from PyPI's wheels of this machine's Ray version (and `extra`); returns its path."""
    import subprocess
    import tempfile

    try:
        version = metadata.version("ray")
    except metadata.PackageNotFoundError:
        _fail("ray is not installed here: its version names the wheels (pip install ray)")
    tag = "cp" + python.replace(".", "")
    out = folder / f"ray-bundle-{version}-{tag}-linux_x86_64.tar.xz"
    with tempfile.TemporaryDirectory(prefix="ray-wheels-") as tmp:
        got = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", f"{RAY}=={version}", *extra]
            + ["--python-version", python, "--platform", "manylinux2014_x86_64"]
            + ["--only-binary=:all:", "-d", tmp],
            capture_output=True,
            text=True,
        )
        if got.returncode != 0:
            _fail(f"pip download for Python {python} failed: {got.stderr.strip()[-300:]}")
        folder.mkdir(parents=True, exist_ok=True)
        pack_wheels(sorted(Path(tmp).glob("*.whl")), out, on_image(extra))
    return out


def pack_wheels(wheels: list[Path], out: Path, skip: set[str]) -> None:
    """Unpack `wheels` into the bundle `out` under site/, as pip would install them (a
    wheel's `*.data/purelib` and `platlib` into site; its scripts and headers left out),
    less the distributions named in `skip` and the files `kept` leaves out."""
    import zipfile

    part = out.with_suffix(".part")
    with tarfile.open(part, "w:xz") as tar:
        for wheel in wheels:
            if _key(wheel.name.split("-")[0]) in skip:
                continue
            with zipfile.ZipFile(wheel) as z:
                for info in z.infolist():
                    name = info.filename
                    top, _, rest = name.partition("/")
                    if top.endswith(".data"):
                        kind, _, name = rest.partition("/")
                        if kind not in ("purelib", "platlib"):
                            continue
                    if info.is_dir() or not kept(name):
                        continue
                    member = tarfile.TarInfo(f"site/{name}")
                    # the wheel's own modes: Ray's raylet and gcs_server are programs
                    member.size = info.file_size
                    member.mode = (info.external_attr >> 16) & 0o777 or 0o644
                    with z.open(info) as f:
                        tar.addfile(member, f)
    os.replace(part, out)


def install(bundle: Path, folder: Path) -> Path:
    """Extract `bundle` into `folder` (offline), unless that bundle is there already;
    returns `folder/site`."""
    if not bundle.is_file():
        _fail(f"{bundle}: no such bundle (build one with benchmarks/ray_bundle.sh DIR)")
    if not bundle.name.endswith(f"-{target()}.tar.xz"):
        _fail(f"{bundle.name} is not for this Python and platform ({target()})")
    site, stamp = folder / "site", folder / "installed-from"
    if not (stamp.is_file() and stamp.read_text() == bundle.name):
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(bundle, "r:xz") as tar:
            tar.extractall(folder, filter="data")
        stamp.write_text(bundle.name)
    return site


def run(bundle: Path, folder: Path, args: list[str]) -> None:
    """Install `bundle` into `folder`, then replace this process by `grid ARGS` with the
    bundle's packages first on PYTHONPATH (Ray's workers inherit it)."""
    site = install(bundle, folder)
    sys.path.insert(0, str(site))
    lacking = [n for n in IMAGE if importlib.util.find_spec(MODULES.get(n, n)) is None]
    if lacking:
        _fail(
            f"this Python lacks {', '.join(lacking)}, which the bundle expects of the image: "
            f"build it with {' '.join(f'--with {n}' for n in lacking)}"
        )
    path = [str(site), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    flags = ["-S"] if sys.flags.no_site else []  # (a test's bare image: no site-packages)
    os.execve(sys.executable, [sys.executable, *flags, "-m", "orchestrator.cli", *args], env)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ray_bundle", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write DIR/ray-bundle-*.tar.xz")
    b.add_argument("dir", type=Path)
    b.add_argument(
        "--with",
        dest="extra",
        action="append",
        default=[],
        metavar="NAME",
        help="also bundle this installed distribution (and what it requires)",
    )
    b.add_argument(
        "--python",
        metavar="X.Y",
        help="for another Python version: from PyPI's wheels of the same Ray (needs PyPI)",
    )
    i = sub.add_parser("install", help="install BUNDLE into FOLDER offline; print its site")
    i.add_argument("bundle", type=Path)
    i.add_argument("folder", type=Path)
    r = sub.add_parser("run", help="install BUNDLE into FOLDER offline, then run grid ARGS")
    r.add_argument("bundle", type=Path)
    r.add_argument("folder", type=Path)
    r.add_argument("args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if args.command == "run":
        run(args.bundle, args.folder, args.args)
    if args.command == "install":
        print(install(args.bundle, args.folder))
        return 0
    t0 = time.perf_counter()
    if args.python:
        out = build_for(args.dir, args.python, tuple(args.extra))
    else:
        out = build(args.dir, tuple(args.extra))
    mb = out.stat().st_size / 1e6
    with tarfile.open(out) as tar:
        names = ", ".join(
            sorted(
                {
                    _key(m.name.split("/")[1].split("-")[0])
                    for m in tar
                    if m.name.endswith(".dist-info/METADATA")
                }
            )
        )
    print(f"{out}: {mb:.1f} MB, {time.perf_counter() - t0:.0f}s; {names}")
    if mb > LIMIT_MB:
        print(f"ray_bundle: {out.name} is {mb:.1f} MB, over {LIMIT_MB} MB", file=sys.stderr)
        return 1
    return 0


def _key(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _fail(message: str):
    print(f"ray_bundle: {message}", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    raise SystemExit(main())
