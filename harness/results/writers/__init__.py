"""Report writers. Each only reads a `RunResults`: junit.xml, matrix.md, observed.md,
matrix.html (the matrix people click through) and results.json (the model's own JSON,
which `RunResults.from_json` reads back)."""

from __future__ import annotations

from pathlib import Path

from ..model import RunResults
from .html import html_matrix
from .junit import junit_xml
from .markdown import markdown_matrix, observed_markdown


def write_all(results: RunResults, out_dir: Path) -> dict[str, Path]:
    """Every report of `results` into `out_dir`; name -> path of what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"junit": out_dir / "junit.xml", "matrix": out_dir / "matrix.md",
             "html": out_dir / "matrix.html", "json": out_dir / "results.json"}
    paths["junit"].write_text(junit_xml(results))
    paths["matrix"].write_text(markdown_matrix(results))
    paths["html"].write_text(html_matrix(results))
    results.write_json(paths["json"])
    if results.observations():
        paths["observed"] = out_dir / "observed.md"
        paths["observed"].write_text(observed_markdown(results))
    return paths


__all__ = ["html_matrix", "junit_xml", "markdown_matrix", "observed_markdown", "write_all"]
