"""Author a notebook from a percent-format script (no outputs), for development.

    python scripts/py2nb.py draft.py notebooks/NN-name.ipynb

Cells start with '# %%' (code) or '# %% [markdown]' (markdown, lines prefixed by '# ').
Tags: '# %% tags=["parameters"]' or '# %% tags=["nbval-check-output"]'.
"""

import json
import re
import sys

import nbformat


def convert(text: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    blocks = re.split(r"^# %%", text, flags=re.M)
    for block in blocks[1:]:
        header, _, body = block.partition("\n")
        tags = json.loads(m.group(1)) if (m := re.search(r"tags=(\[.*?\])", header)) else []
        body = body.strip("\n")
        if "[markdown]" in header:
            src = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            cell = nbformat.v4.new_markdown_cell(src)
        else:
            cell = nbformat.v4.new_code_cell(body)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


if __name__ == "__main__":
    src, dst = sys.argv[1], sys.argv[2]
    nb = convert(open(src).read())
    nbformat.validate(nb)
    with open(dst, "w") as fh:
        fh.write(nbformat.writes(nb) + "\n")
    print(f"wrote {dst} ({len(nb.cells)} cells)")
