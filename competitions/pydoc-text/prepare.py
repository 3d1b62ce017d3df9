"""Generate pydoc-text: the Python standard library's own help text as a corpus.

`pydoc_data.topics` holds the text `help()` shows for every keyword and topic
(about 460,000 characters); it ships with every Python, so nothing is
downloaded. `train.txt` is the topics in name order, separated by blank
lines; the last tenth of it is the validation split (by position).
`test.csv` holds prompts (`id,prompt`): the opening words of paragraphs in that
last tenth, and `sample_submission.csv` the `id,text` format to fill in.
Deterministic: the same files every time on the same Python version.
"""

from pathlib import Path
from pydoc_data.topics import topics

import pandas as pd

PROMPTS, PROMPT_WORDS, VAL_FRACTION = 20, 6, 0.1
FILES = ("train.txt", "test.csv", "sample_submission.csv")


def _write_text(path, text):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _write_csv(frame, path):
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


def corpus():
    return "\n\n".join(topics[name].strip("\n") for name in sorted(topics)) + "\n"


def prompts(text, count=PROMPTS, words=PROMPT_WORDS):
    """Opening words of evenly spaced paragraphs of the validation tail."""
    tail = text[int(len(text) * (1 - VAL_FRACTION)) :]
    paragraphs = [p.strip() for p in tail.split("\n\n") if len(p.split()) >= 2 * words]
    step = max(1, len(paragraphs) // count)
    return [" ".join(p.split()[:words]) for p in paragraphs[::step][:count]]


def prepare(data_dir):
    data_dir = Path(data_dir)
    if all((data_dir / name).is_file() for name in FILES):
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    text = corpus()
    ids = [f"p{i:02d}" for i in range(len(prompts(text)))]
    _write_csv(pd.DataFrame({"id": ids, "prompt": prompts(text)}), data_dir / "test.csv")
    _write_csv(pd.DataFrame({"id": ids, "text": "..."}), data_dir / "sample_submission.csv")
    _write_text(data_dir / "train.txt", text)
