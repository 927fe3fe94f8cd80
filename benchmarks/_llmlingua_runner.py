"""Serve the reference `llmlingua` package (0.2.2) over JSON lines, for `compression.py`.

Runs in its own environment, never ragline's: llmlingua 0.2.2 works unpatched only with
transformers <= 4.47.1 (its KV-cache handling predates the Cache classes). Two things are
adapted here, and reported in the ready line:

- Token counting. `PromptCompressor.__init__` calls `tiktoken.encoding_for_model("gpt-3.5-turbo")`,
  which fetches a vocabulary over the network. Before constructing, `llmlingua.prompt_compressor`'s
  `tiktoken` name is replaced by a shim whose encoder is the local SmolLM2 tokenizer (no special
  tokens), so llmlingua's budgets (`origin_tokens`, target tokens, context lengths) are counted in
  the same tokens the benchmark measures with.
- The checkpoint. ragline's cache holds a checkpoint written by transformers 5.x: its config keeps
  the RoPE base under `rope_parameters` (4.47.1 would silently fall back to theta 1e4) and its
  tokenizer config names the 5.x class `TokenizersBackend`. A compatible view is written to a
  temporary folder: the same weights and `tokenizer.json` (linked), a config with `rope_theta`,
  and a tokenizer config naming `PreTrainedTokenizerFast`. Nothing is fetched from a hub.

Protocol: the first stdout line is `{"ready": true, ...facts}`. Then one request per stdin line,
`{"id", "question", "contexts": [str], "rate"}`, answered by one stdout line
`{"id", "compressed", "seconds", "origin_tokens", "compressed_tokens"}` (or `{"id", "error"}`).
`compressed` is the context only: llmlingua appends the question (`concate_question`, left at its
default so the budget is the documented one); that suffix is removed. `seconds` is
`compress_prompt`'s wall time (`time.perf_counter`, after a CUDA synchronize on GPUs).

    /work/llmlingua-venv/bin/python benchmarks/_llmlingua_runner.py --model HF_DIR [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

# LongLLMLingua's settings as the llmlingua README gives them for question-aware compression.
LONGLLMLINGUA = {
    "condition_in_question": "after_condition",
    "reorder_context": "sort",
    "dynamic_context_compression_ratio": 0.3,
    "condition_compare": True,
    "context_budget": "+100",
    "rank_method": "longllmlingua",
}


def compatible_checkpoint(src: Path, dst: Path) -> list[str]:
    """Write a transformers-4.47-loadable view of the 5.x checkpoint `src` into `dst`."""
    notes = []
    config = json.loads((src / "config.json").read_text())
    rope = config.pop("rope_parameters", None)
    if rope:
        if rope.get("rope_type", "default") != "default":
            config["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
        config["rope_theta"] = rope["rope_theta"]
        notes.append(f"config: rope_parameters -> rope_theta={rope['rope_theta']}")
    if "dtype" in config and "torch_dtype" not in config:
        config["torch_dtype"] = config.pop("dtype")
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    tok = json.loads((src / "tokenizer_config.json").read_text())
    if tok.get("tokenizer_class") not in (None, "PreTrainedTokenizerFast"):
        notes.append(f"tokenizer: {tok.get('tokenizer_class')} -> PreTrainedTokenizerFast")
    tok["tokenizer_class"] = "PreTrainedTokenizerFast"
    for key in ("backend", "is_local", "local_files_only"):
        tok.pop(key, None)
    (dst / "tokenizer_config.json").write_text(json.dumps(tok, indent=2))
    for name in os.listdir(src):
        if name not in ("config.json", "tokenizer_config.json"):
            os.symlink(src / name, dst / name)
    return notes


class _LocalEncoding:
    """Stands in for a tiktoken Encoding: `encode` counts with the local tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def encode(self, text: str, *args: Any, **kwargs: Any) -> list[int]:
        return list(self._tokenizer(text, add_special_tokens=False).input_ids)

    def decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids))


def neutralise_tiktoken(tokenizer: Any) -> str:
    """Point llmlingua's `tiktoken` at the local tokenizer; return what was done, for the output."""
    import llmlingua.prompt_compressor as pc

    encoding = _LocalEncoding(tokenizer)
    shim = types.SimpleNamespace(
        encoding_for_model=lambda _name: encoding, get_encoding=lambda _name: encoding
    )
    pc.tiktoken = shim
    return (
        "llmlingua's tiktoken gpt-3.5-turbo counter (a network fetch at start-up) is replaced by "
        "the local SmolLM2 tokenizer (no special tokens): llmlingua budgets in SmolLM2 tokens"
    )


def load(args: argparse.Namespace, workdir: Path) -> tuple[Any, dict[str, Any]]:
    import llmlingua
    import torch
    import transformers
    from transformers import PreTrainedTokenizerFast

    started = time.perf_counter()
    notes = compatible_checkpoint(Path(args.model).resolve(), workdir)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(workdir)
    counter = neutralise_tiktoken(tokenizer)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    compressor = llmlingua.PromptCompressor(
        model_name=str(workdir), device_map=args.device, model_config={"torch_dtype": dtype}
    )
    param = next(compressor.model.parameters())
    facts = {
        "ready": True,
        "load_seconds": time.perf_counter() - started,
        "versions": {
            "llmlingua": getattr(llmlingua, "__version__", None) or _dist_version("llmlingua"),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
        },
        "device": str(param.device),
        "dtype": str(param.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "rope_theta": getattr(compressor.model.config, "rope_theta", None),
        "token_counter": counter,
        "checkpoint_notes": notes,
        "settings": LONGLLMLINGUA,
    }
    return compressor, facts


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def timed_ranking(compressor: Any, device: str) -> dict[str, float]:
    """Wrap the instance's document ranking with a timer; returns the dict its seconds go to.

    Measurement only: the wrapped method runs unchanged, so the total time is unaffected
    beyond one clock read per call.
    """
    import torch

    spent = {"rank": 0.0}
    rank = compressor.get_rank_results

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return rank(*args, **kwargs)
        finally:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            spent["rank"] += time.perf_counter() - started

    compressor.get_rank_results = wrapper
    return spent


def compress(
    compressor: Any, request: dict[str, Any], device: str, spent: dict[str, float]
) -> dict[str, Any]:
    import torch

    question = request["question"]
    spent["rank"] = 0.0
    started = time.perf_counter()
    result = compressor.compress_prompt(
        list(request["contexts"]), question=question, rate=float(request["rate"]), **LONGLLMLINGUA
    )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    text = result["compressed_prompt"]
    suffix = "\n\n" + question
    if text.endswith(suffix):
        text = text[: -len(suffix)]
    elif text == question:
        text = ""
    return {
        "id": request.get("id"),
        "compressed": text,
        "seconds": seconds,
        "rank_seconds": spent["rank"],
        "origin_tokens": result["origin_tokens"],
        "compressed_tokens": result["compressed_tokens"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="ragline's SmolLM2 HF checkpoint folder")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # stdout carries the protocol alone: anything a library prints goes to stderr.
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(obj: dict[str, Any]) -> None:
        channel.write(json.dumps(obj) + "\n")
        channel.flush()

    with tempfile.TemporaryDirectory(prefix="llmlingua-ckpt-") as tmp:
        try:
            compressor, facts = load(args, Path(tmp))
        except Exception as err:
            send({"ready": False, "error": f"{type(err).__name__}: {err}"})
            raise
        send(facts)
        spent = timed_ranking(compressor, args.device)
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            try:
                send(compress(compressor, request, args.device, spent))
            except Exception as err:
                send({"id": request.get("id"), "error": f"{type(err).__name__}: {err}"})


if __name__ == "__main__":
    main()
