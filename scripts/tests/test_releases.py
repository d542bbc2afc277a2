"""The release record and its checks (scripts/releases.py), on a throwaway git repository
laid out like this one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import releases

CORE_PYPROJECT = '[project]\nname = "chanmux"\ndynamic = ["version"]\n'
PLUGIN_PYPROJECT = ('[project]\nname = "chanmux-sync"\ndynamic = ["version"]\n'
                    'dependencies = ["chanmux{range}", "anyio>=4.7"]\n')


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def write(root: Path, core: str = "0.2.0", sync: str = "0.2.0", rng: str = ">=0.2,<0.3",
          core_log: str = "## 0.2.0\n\n- grew\n", sync_log: str = "## 0.2.0\n\n- new\n") -> None:
    (root / "core" / "chanmux").mkdir(parents=True, exist_ok=True)
    (root / "plugins" / "sync" / "chanmux_sync").mkdir(parents=True, exist_ok=True)
    (root / "core" / "pyproject.toml").write_text(CORE_PYPROJECT)
    (root / "core" / "chanmux" / "_version.py").write_text(f'__version__ = "{core}"\n')
    (root / "core" / "CHANGELOG.md").write_text(f"# Changelog\n\n## Unreleased\n\n{core_log}")
    (root / "plugins" / "sync" / "pyproject.toml").write_text(
        PLUGIN_PYPROJECT.format(range=rng))
    (root / "plugins" / "sync" / "chanmux_sync" / "_version.py").write_text(
        f'__version__ = "{sync}"\n')
    (root / "plugins" / "sync" / "CHANGELOG.md").write_text(f"# Changelog\n\n{sync_log}")


def commit(root: Path, message: str = "work") -> str:
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    write(root, core="0.1.0", sync="0.1.0", rng=">=0.1,<0.2",
          core_log="## 0.1.0\n\n- first\n", sync_log="## 0.1.0\n\n- first\n")
    first = commit(root, "0.1.0")
    (root / "releases.toml").write_text(
        f'[[release]]\npackage = "chanmux"\nversion = "0.1.0"\ncommit = "{first}"\n\n'
        f'[[release]]\npackage = "chanmux-sync"\nversion = "0.1.0"\ncommit = "{first}"\n')
    commit(root, "record 0.1.0")
    return root


def test_the_floor_is_the_lowest_recorded_core_release_the_range_admits(repo: Path) -> None:
    assert releases.floor("chanmux-sync", repo)["version"] == "0.1.0"
    write(repo)  # sync now needs chanmux>=0.2, which is not released
    with pytest.raises(releases.ReleaseError, match=r"admits no recorded release of chanmux"):
        releases.floor("chanmux-sync", repo)


def test_a_release_needs_a_bump_a_changelog_section_and_a_recorded_core_floor(repo: Path) -> None:
    problems = releases.release_problems("chanmux-sync", repo)
    assert any("not above its last release 0.1.0" in p for p in problems)

    write(repo, sync_log="## Unreleased\n\n- pending\n\n## 0.1.0\n\n- first\n")
    commit(repo)
    problems = " | ".join(releases.release_problems("chanmux-sync", repo))
    assert "has no section '## 0.2.0'" in problems
    assert "floor chanmux>=0.2 is not a recorded release of chanmux" in problems

    write(repo, sync_log="## Unreleased\n\n- pending\n\n## 0.2.0\n\n- new\n")
    commit(repo)
    assert any("still has entries under '## Unreleased'" in p
               for p in releases.release_problems("chanmux-sync", repo))


def test_core_then_a_plugin_are_released_and_recorded(repo: Path) -> None:
    write(repo)
    head = commit(repo, "0.2.0")
    assert releases.release_problems("chanmux", repo) == []
    releases.record_release("chanmux", repo)
    assert releases.release_problems("chanmux-sync", repo) == []
    releases.record_release("chanmux-sync", repo)
    assert releases.last_release("chanmux-sync", repo) == {
        "package": "chanmux-sync", "version": "0.2.0", "commit": head}
    assert releases.floor("chanmux-sync", repo)["version"] == "0.2.0"


def test_a_range_that_excludes_core_at_head_and_a_dirty_tree_are_refused(repo: Path) -> None:
    write(repo, core="0.3.0", core_log="## 0.3.0\n\n- broke\n")
    commit(repo)
    (repo / "plugins" / "sync" / "stray.py").write_text("")
    problems = " | ".join(releases.release_problems("chanmux-sync", repo))
    assert "which excludes chanmux 0.3.0 at HEAD" in problems
    assert "plugins/sync has uncommitted changes" in problems


def test_a_release_is_unpacked_from_its_commit_not_the_work_tree(repo: Path, tmp_path: Path) -> None:
    first = releases.last_release("chanmux", repo)["commit"]
    write(repo)
    commit(repo)
    dest = tmp_path / "out"
    releases.export(first, ["core"], dest, repo)
    assert 'version__ = "0.1.0"' in (dest / "core" / "chanmux" / "_version.py").read_text()


def test_a_commit_missing_from_history_says_so(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(releases.ReleaseError, match=r"cannot read core at commit 0{12}.*unshallow"):
        releases.export("0" * 40, ["core"], tmp_path / "out", repo)


def test_the_record_of_this_repository_is_readable_and_names_known_packages() -> None:
    entries = releases.record()
    assert {e["package"] for e in entries} == set(releases.FOLDERS)
    for package in releases.FOLDERS:
        if package != releases.CORE:
            releases.floor(package)  # every plugin's floor is a recorded core release


def test_a_version_written_in_pyproject_beside_version_py_is_refused(repo: Path) -> None:
    write(repo)
    path = repo / "plugins" / "sync" / "pyproject.toml"
    path.write_text(path.read_text().replace('dynamic = ["version"]', 'version = "0.2.0"'))
    commit(repo)
    problems = " | ".join(releases.release_problems("chanmux-sync", repo))
    assert 'plugins/sync/pyproject.toml sets version = ... beside plugins/sync/chanmux_sync/_version.py' in problems


def test_every_package_of_this_repository_writes_its_version_once() -> None:
    for package in releases.FOLDERS:
        assert "version" not in releases.pyproject(package), package
        assert releases.head_version(package)
