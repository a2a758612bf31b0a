"""MkDocs hook (mkdocs.yml ``hooks:``): render the Sphinx roles of the docstrings.

The docstrings cross-reference with Sphinx roles (``:class:`~mixformer.models.MixFormer```),
which mkdocstrings' Google parser leaves as text (``:class:<code>~mixformer...</code>``). This
drops the role and, for ``~``, keeps the last name only, as Sphinx shows it.
"""

import re

_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):<code>(~?)([\w.]+)</code>")


def _name(m: re.Match) -> str:
    name = m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2)
    return f"<code>{name}</code>"


def on_page_content(html: str, **kwargs) -> str:
    return _ROLE.sub(_name, html)
