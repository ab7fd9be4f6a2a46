"""The README's Python examples run as written (both blocks, in order, in one namespace)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "the README should hold the API example and the evaluation example"
    ns: dict = {}
    for code in blocks:
        exec(compile(code, str(README), "exec"), ns)  # noqa: S102 - our own documentation
    out = capsys.readouterr().out
    assert "random_label:" in out and "forget acc" in out
    m = ns["metrics"]
    assert 0 <= m["forget_acc"] <= 100 and "mia_efficacy" in m
