"""A ragline pipeline inside a LangChain LCEL chain, streaming token by token, offline.

    pip install 'ragline[langchain]'
    python examples/langchain_lcel.py ["your question"]

The chain is `prompt | pipeline.as_runnable() | parser`: a prompt template shapes the user's
question, the pipeline retrieves from the bundled example corpus and answers with the packaged
SmolLM2 (no network after `ragline models pull`), and the parsers split the answer into its
text (streamed) and its sources (printed once the stream ends).
"""

import sys
from pathlib import Path

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel

from ragline import Pipeline
from ragline.bundled import default_index

here = Path(__file__).parent
pipe = Pipeline.from_yaml(
    here / "pipelines" / "default.yaml", env={"RAGLINE_INDEX": str(default_index())}
)

prompt = ChatPromptTemplate.from_messages(
    [("system", "You answer questions about the Lantern Isles."), ("human", "{question}")]
)
sources = RunnableLambda(
    lambda message: [
        f"[{s['number']}]{'*' if s['cited'] else ' '} {s['title']}"
        for s in message.response_metadata["sources"]
    ]
)
chain = prompt | pipe.as_runnable() | RunnableParallel(text=StrOutputParser(), sources=sources)

question = sys.argv[1] if len(sys.argv) > 1 else "How tall is the Brassmoor Lighthouse?"
# The two branches of RunnableParallel stream from separate threads, so the sources can
# arrive before the last text chunk: print them only once the stream is over.
cited: list[str] = []
for part in chain.stream({"question": question}):
    if "text" in part:
        print(part["text"], end="", flush=True)
    cited.extend(part.get("sources", []))
print("\n\nSources:\n  " + "\n  ".join(cited))
