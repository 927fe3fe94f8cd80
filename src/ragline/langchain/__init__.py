"""LangChain integration: the pipeline as a Runnable, stages as retrievers and compressors, and back.

Needs `pip install 'ragline[langchain]'`; `import ragline` never imports this package.

Example:
    >>> from ragline.langchain import RaglineRetriever  # doctest: +SKIP
    >>> docs = RaglineRetriever(stage=BM25Retriever(index="idx"), k=3).invoke("lighthouse")  # doctest: +SKIP
"""

from ragline.errors import MissingDependency

try:
    import langchain_core  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise MissingDependency(
        "langchain-core", extra="langchain", purpose="ragline.langchain"
    ) from err

from ragline.langchain.chat import LangChainChatGenerator
from ragline.langchain.compressor import RaglineCompressor
from ragline.langchain.retriever import RaglineRetriever
from ragline.langchain.runnable import RaglineRunnable, answer_message
from ragline.retrievers.langchain import (
    LangChainRetriever,
    from_langchain_documents,
    to_langchain_documents,
)

__all__ = [
    "LangChainChatGenerator",
    "LangChainRetriever",
    "RaglineCompressor",
    "RaglineRetriever",
    "RaglineRunnable",
    "answer_message",
    "from_langchain_documents",
    "to_langchain_documents",
]
