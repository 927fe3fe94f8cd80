"""Retriever stages and the index directory they search."""

from ragline.retrievers.bm25 import BM25Retriever
from ragline.retrievers.index import Index, build_index, open_index
from ragline.retrievers.ingest import read_documents

__all__ = ["BM25Retriever", "Index", "build_index", "open_index", "read_documents"]
