#!/usr/bin/env python3
"""The release record (releases.toml) and the released versions built from it.

    scripts/releases.py show                       each package: HEAD version, core range,
                                                   core floor, last release
    scripts/releases.py floor PACKAGE              the lowest recorded core release PACKAGE's
                                                   `chanmux` range admits
    scripts/releases.py use-core-floor PACKAGE DIR build core at PACKAGE's floor (from its
                                                   recorded commit, unpacked into DIR) and
                                                   install it into this Python
    scripts/releases.py use-release PACKAGE DIR    install PACKAGE's last release (and the test
                                                   servers of that commit) into this Python;
                                                   its own tests are then in DIR/<folder>/tests

    scripts/releases.py check PACKAGE              what scripts/release checks before building
    scripts/releases.py record PACKAGE             append PACKAGE's HEAD version at HEAD's
                                                   commit to releases.toml

tox runs use-core-floor and use-release in `commands_pre` with the environment's Python, after its `deps`
installed everything at HEAD: one package is then replaced by the released version, without
its dependencies (which HEAD's copy brought), so what is tested is exactly that release's code
against everything else at HEAD. Standard library only, plus `packaging` (a dependency of
core, so present wherever core is installed).
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "releases.toml"
CORE = "chanmux"
#: Each package's folder in the repository.
FOLDERS = {
    "chanmux": "core",
    "chanmux-sync": "plugins/sync",
    "chanmux-forward": "plugins/forward",
    "chanmux-irc": "plugins/plugs_irc",
    "chanmux-matrix": "plugins/plugs_matrix",
}
#: Not released; built from the same commit as a released plugin, whose tests use it.
TESTSERVERS = "testservers"


class ReleaseError(Exception):
    """Something in the record or a package's metadata that stops the job; one line."""


def folder(package: str) -> str:
    try:
        return FOLDERS[package]
    except KeyError:
        raise ReleaseError(f"unknown package {package!r}; known: {', '.join(FOLDERS)}") from None


def record(root: Path = ROOT) -> list[dict[str, str]]:
    """Every recorded release, as written in releases.toml."""
    path = root / "releases.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ReleaseError(f"{path}: {exc}") from None
    releases = data.get("release", [])
    for i, entry in enumerate(releases):
        for key in ("package", "version", "commit"):
            if not isinstance(entry.get(key), str):
                raise ReleaseError(f"{path}: release {i + 1} has no {key!r}")
        folder(entry["package"])
    return releases


def releases_of(package: str, root: Path = ROOT) -> list[dict[str, str]]:
    """`package`'s releases, oldest version first."""
    return sorted((r for r in record(root) if r["package"] == package),
                  key=lambda r: Version(r["version"]))


def pyproject(package: str, root: Path = ROOT) -> dict:
    return tomllib.loads((root / folder(package) / "pyproject.toml").read_text())["project"]


def version_file(package: str, root: Path = ROOT) -> Path:
    """Where `package` writes its version once: `<folder>/<module>/_version.py`."""
    return root / folder(package) / package.replace("-", "_") / "_version.py"


def head_version(package: str, root: Path = ROOT) -> str:
    """The version `package` carries in the working tree, from its `_version.py` (pyproject.toml
    reads it from there: `dynamic = ["version"]`, so `__version__` and the metadata agree)."""
    path = version_file(package, root)
    try:
        source = path.read_text()
    except OSError as exc:
        raise ReleaseError(f"{path}: {exc.strerror}") from None
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', source, re.M)
    if match is None:
        raise ReleaseError(f"{path}: no __version__ = \"...\" line")
    return match.group(1)


def core_requirement(package: str, root: Path = ROOT) -> Requirement:
    """`package`'s requirement on core, as its pyproject.toml declares it."""
    for line in pyproject(package, root).get("dependencies", []):
        req = Requirement(line)
        if req.name == CORE:
            return req
    raise ReleaseError(f"{package}: pyproject.toml does not depend on {CORE}")


def floor(package: str, root: Path = ROOT) -> dict[str, str]:
    """The lowest recorded core release that `package`'s declared range admits."""
    req = core_requirement(package, root)
    for release in releases_of(CORE, root):
        if req.specifier.contains(release["version"], prereleases=True):
            return release
    raise ReleaseError(f"{package} requires {req}, which admits no recorded release of "
                       f"{CORE} (releases.toml): release core first, or lower the floor")


def last_release(package: str, root: Path = ROOT) -> dict[str, str]:
    releases = releases_of(package, root)
    if not releases:
        raise ReleaseError(f"{package} has no release in releases.toml")
    return releases[-1]


def export(commit: str, folders: list[str], dest: Path, root: Path = ROOT) -> None:
    """Unpack `folders` as they were at `commit` into `dest` (from git, not the work tree)."""
    try:
        archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", commit,
                                  *folders], check=True, capture_output=True).stdout
    except FileNotFoundError:
        raise ReleaseError("git is not installed; the released versions are built from the "
                           "repository's history") from None
    except subprocess.CalledProcessError as exc:
        raise ReleaseError(
            f"cannot read {', '.join(folders)} at commit {commit[:12]} from {root}: "
            f"{exc.stderr.decode(errors='replace').strip()} (a shallow clone lacks the "
            f"history: git fetch --unshallow)") from None
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python before 3.11.4; the archive is our own history
            tar.extractall(dest)


def install(paths: list[Path]) -> None:
    """Install the packages at `paths` into this Python, replacing what is there, without
    their dependencies (HEAD's copies brought those)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--force-reinstall", "--disable-pip-version-check",
                    *(str(p) for p in paths)], check=True)


def use_core_floor(package: str, dest: Path) -> str:
    release = floor(package)
    export(release["commit"], [FOLDERS[CORE]], dest)
    install([dest / FOLDERS[CORE]])
    return f"{CORE} {release['version']} (the floor of {package}, commit {release['commit'][:12]})"


def use_release(package: str, dest: Path) -> str:
    release = last_release(package)
    export(release["commit"], [folder(package), TESTSERVERS], dest)
    install([dest / folder(package), dest / TESTSERVERS])
    return (f"{package} {release['version']} (its last release, commit "
            f"{release['commit'][:12]}); its tests: {dest / folder(package) / 'tests'}")


def changelog_problem(package: str, version: str, root: Path = ROOT) -> str | None:
    """Why `package`'s changelog is not ready for `version`, or None: it needs a section
    `## VERSION` and no entries left under `## Unreleased`."""
    path = root / folder(package) / "CHANGELOG.md"
    try:
        text = path.read_text()
    except OSError as exc:
        return f"{path}: {exc}"
    sections = re.split(r"^## +", text, flags=re.M)[1:]
    heads = {section.split(None, 1)[0]: section for section in sections if section.strip()}
    if version not in heads:
        return f"{path} has no section '## {version}' saying what this release changed"
    unreleased = heads.get("Unreleased", "").split("\n", 1)[1:]
    if unreleased and unreleased[0].strip():
        return f"{path} still has entries under '## Unreleased': move them into '## {version}'"
    return None


def release_problems(package: str, root: Path = ROOT) -> list[str]:
    """Everything that stops `package` at HEAD from being released, one line each."""
    problems = []
    version = head_version(package, root)
    released = [r["version"] for r in releases_of(package, root)]
    if released and Version(version) <= Version(released[-1]):
        problems.append(f"{package} {version} is not above its last release {released[-1]}: "
                        f"bump the version")
    if "version" in pyproject(package, root):
        problems.append(f"{folder(package)}/pyproject.toml sets version = ... beside "
                        f"{version_file(package, root).relative_to(root)}: declare "
                        f'dynamic = ["version"] so the version is written once')
    problem = changelog_problem(package, version, root)
    if problem:
        problems.append(problem)
    if package != CORE:
        req = core_requirement(package, root)
        core_head = head_version(CORE, root)
        lows = [s.version for s in req.specifier if s.operator == ">="]
        cores = {r["version"] for r in releases_of(CORE, root)}
        if not lows:
            problems.append(f"{package} requires {req}: name its floor (chanmux>=X)")
        elif not any(Version(low) == Version(c) for low in lows for c in cores):
            problems.append(f"{package}'s floor {CORE}>={lows[0]} is not a recorded release "
                            f"of {CORE}: release core first, or raise the floor to one")
        if not req.specifier.contains(core_head, prereleases=True):
            problems.append(f"{package} requires {req}, which excludes {CORE} {core_head} at "
                            f"HEAD")
    status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                             folder(package)], capture_output=True, text=True, check=True).stdout
    if status.strip():
        problems.append(f"{folder(package)} has uncommitted changes: a release is built from "
                        f"a commit")
    return problems


def record_release(package: str, root: Path = ROOT) -> str:
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    version = head_version(package, root)
    with (root / "releases.toml").open("a") as out:
        out.write(f'\n[[release]]\npackage = "{package}"\nversion = "{version}"\n'
                  f'commit = "{commit}"\n')
    return f"recorded {package} {version} at {commit[:12]} in releases.toml"


def show() -> None:
    print(f"{'package':17} {'HEAD':8} {'core range':18} {'core floor':10} last release")
    for package in FOLDERS:
        version = head_version(package)
        if package == CORE:
            rng = fl = "-"
        else:
            rng = str(core_requirement(package).specifier)
            try:
                fl = floor(package)["version"]
            except ReleaseError:
                fl = "none"
        try:
            last = last_release(package)
            last_text = f"{last['version']} @ {last['commit'][:12]}"
        except ReleaseError:
            last_text = "none"
        print(f"{package:17} {version:8} {rng:18} {fl:10} {last_text}")


def main(argv: list[str]) -> int:
    try:
        match argv:
            case ["show"]:
                show()
            case ["floor", package]:
                print(floor(package)["version"])
            case ["use-core-floor", package, dest]:
                print("installed", use_core_floor(package, Path(dest)))
            case ["check", package]:
                problems = release_problems(package)
                for problem in problems:
                    print(f"release: {problem}", file=sys.stderr)
                if problems:
                    return 1
                print(f"{package} {head_version(package)}: ready to build")
            case ["record", package]:
                print(record_release(package))
            case ["use-release", package, dest]:
                print("installed", use_release(package, Path(dest)))
            case _:
                print(__doc__, file=sys.stderr)
                return 2
    except ReleaseError as exc:
        print(f"releases: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
