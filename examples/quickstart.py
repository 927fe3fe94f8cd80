"""Answer questions about the bundled example corpus from Python.

python examples/quickstart.py
"""

from pathlib import Path

from ragline import Pipeline
from ragline.bundled import default_index

here = Path(__file__).parent
pipe = Pipeline.from_yaml(
    here / "pipelines" / "default.yaml", env={"RAGLINE_INDEX": str(default_index())}
)

answer = pipe.run("How tall is the Brassmoor Lighthouse?")
print(answer.text)
for source in answer.sources:
    print(f"[{source.number}]{'*' if source.cited else ' '} {source.document.title}")
print({stage: round(seconds, 3) for stage, seconds in answer.timings.items()})

for chunk in pipe.stream("What colour is tarnberry wine?"):
    if isinstance(chunk, str):
        print(chunk, end="", flush=True)
print()
