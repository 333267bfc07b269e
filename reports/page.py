"""The jinja2 environment of the report: templates/ beside this file, autoescaping on for every
template (HTML and the SVG inside it), undefined names an error rather than an empty string."""
from __future__ import annotations

import functools
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.lru_cache(maxsize=1)
def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=False, lstrip_blocks=False)
    return env


def static() -> dict:
    """The page's stylesheet and script, inlined verbatim (our own files; never data)."""
    from markupsafe import Markup

    return {"css": Markup((TEMPLATES / "report.css").read_text(encoding="utf-8")),
            "js": Markup((TEMPLATES / "report.js").read_text(encoding="utf-8"))}


def render(template: str, **context) -> str:
    return environment().get_template(template).render(static=static(), **context)
