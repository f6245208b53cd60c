"""A mkdocs hook: Markdown files of the repository that the docs link to become pages.

``docs/tuning.md`` links to ``../benchmarks/RESULTS.md``, outside ``docs/``. This hook
serves each ``benchmarks/*.md`` as a page of the site (``benchmarks/RESULTS.md``) and
rewrites links that leave ``docs/`` for one of them, so the link works on the site and
``mkdocs build --strict`` can check it. Loaded by ``mkdocs.yml``; not part of the package.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

REPOSITORY = Path(__file__).resolve().parents[2]
#: Folders of the repository whose Markdown files are served as pages.
FOLDERS = ("benchmarks",)

_LINK = re.compile(r"(\]\()([^)\s#]+\.md)(#[^)\s]*)?(\))")


def on_files(files: Files, config: Any) -> Files:
    for folder in FOLDERS:
        for path in sorted((REPOSITORY / folder).glob("*.md")):
            uri = f"{folder}/{path.name}"
            if files.get_file_from_path(uri) is None:
                files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    here = posixpath.dirname(page.file.src_uri)

    def relink(match: re.Match[str]) -> str:
        target = posixpath.normpath(posixpath.join(here, match.group(2)))
        if target.startswith("../"):
            inside = target[len("../") :]
            if files.get_file_from_path(inside) is not None:
                relative = posixpath.relpath(inside, here or ".")
                return f"{match.group(1)}{relative}{match.group(3) or ''}{match.group(4)}"
        return match.group(0)

    return _LINK.sub(relink, markdown)
