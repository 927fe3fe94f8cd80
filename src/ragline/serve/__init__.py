"""`ragline serve`: a pipeline behind an OpenAI-compatible HTTP API (needs `ragline[serve]`)."""

from ragline.serve.protocol import ChatRequest, ServeLimits

__all__ = ["ChatRequest", "ServeLimits", "build_app"]


def __getattr__(name: str) -> object:
    # The web framework loads only when an app is built, so reading the protocol stays cheap.
    if name == "build_app":
        from ragline.serve.app import build_app

        return build_app
    raise AttributeError(name)
