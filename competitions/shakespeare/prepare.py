"""Lay out shakespeare: Karpathy's tiny-shakespeare `input.txt`, which the user supplies.

Put the file (about 1.1 M characters of speeches, `NAME:` lines followed by
verse) at `data/input.txt`; this script then writes `test.csv` with prompts
(`id,prompt`): the speaker line and first words of evenly spaced speeches in
the last tenth of the text (the validation split), and `sample_submission.csv`
(`id,text`).
"""

from pathlib import Path

import pandas as pd

PROMPTS, VAL_FRACTION = 20, 0.1
SOURCE = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


def _write_csv(frame, path):
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


def prompts(text, count=PROMPTS):
    """`NAME:\\n` plus the first three words of evenly spaced speeches in the tail."""
    tail = text[int(len(text) * (1 - VAL_FRACTION)) :]
    speeches = []
    for block in tail.split("\n\n"):
        lines = block.strip().split("\n")
        if len(lines) >= 2 and lines[0].endswith(":") and len(lines[1].split()) >= 3:
            speeches.append(lines[0] + "\n" + " ".join(lines[1].split()[:3]))
    step = max(1, len(speeches) // count)
    return speeches[::step][:count]


def prepare(data_dir):
    data_dir = Path(data_dir)
    source = data_dir / "input.txt"
    if not source.is_file():
        raise ValueError(f"put tiny-shakespeare's input.txt at {source} (from {SOURCE})")
    found = prompts(source.read_text(encoding="utf-8"))
    if not found:
        raise ValueError(f"{source} has no 'NAME:' speeches in its last tenth")
    ids = [f"s{i:02d}" for i in range(len(found))]
    _write_csv(pd.DataFrame({"id": ids, "prompt": found}), data_dir / "test.csv")
    _write_csv(pd.DataFrame({"id": ids, "text": "..."}), data_dir / "sample_submission.csv")
