"""Retriever stages, the index directory they search, and the tools that build it."""

from ragline.retrievers.bm25 import BM25Retriever, BM25Settings
from ragline.retrievers.chunking import ChunkSettings
from ragline.retrievers.dense import DenseRetriever, DenseSettings
from ragline.retrievers.hybrid import HybridRetriever
from ragline.retrievers.index import Index, open_index
from ragline.retrievers.indexing import add_documents, build_index
from ragline.retrievers.ingest import read_documents

__all__ = [
    "BM25Retriever",
    "BM25Settings",
    "ChunkSettings",
    "DenseRetriever",
    "DenseSettings",
    "HybridRetriever",
    "Index",
    "add_documents",
    "build_index",
    "open_index",
    "read_documents",
]
