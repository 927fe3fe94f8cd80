"""`ragline calibrate MODEL --samples FILE --out config.json`: per-head sparse-prefill patterns."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ragline.cli.app import app
from ragline.cli.output import print_json
from ragline.errors import UsageError
from ragline.progress import notice, progress_bar

__all__ = ["calibrate_cmd", "opening_tokens", "read_sample_texts"]


def read_sample_texts(path: Path) -> list[str]:
    """Texts of a `.jsonl`/`.jsonl.gz` file (`text` field, `title` prepended) or a plain text file."""
    if not path.is_file():
        raise UsageError(f"--samples {path}: no such file")
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        if ".jsonl" not in path.name:
            return [fh.read()]
        texts = []
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UsageError(f"--samples {path}:{n}: not JSON ({err})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise UsageError(f'--samples {path}:{n}: expected an object with a "text" string')
            texts.append(f"{row['title']}\n{row['text']}" if row.get("title") else row["text"])
    return texts


def opening_tokens(tokenizer: Any) -> list[int]:
    """The special tokens the tokenizer puts before a text's own (`<bos>`; none for SmolLM2)."""
    probe = "Calibration"
    full = list(tokenizer(probe).input_ids)
    text = list(tokenizer(probe, add_special_tokens=False).input_ids)
    for start in range(len(full) - len(text) + 1):
        if full[start : start + len(text)] == text:
            return full[:start]
    return []


def _token_samples(tokenizer: Any, texts: list[str], seq_len: int, count: int) -> list[list[int]]:
    """Consecutive texts joined into samples of `seq_len` tokens (the last may be shorter).

    Each sample starts with the special tokens the tokenizer opens a prompt with (Gemma's
    `<bos>`; none for SmolLM2), as prompts do at prefill: the first key is often a head's sink.
    """
    opening = opening_tokens(tokenizer)
    body = max(1, seq_len - len(opening))
    samples: list[list[int]] = []
    current: list[int] = []
    for text in texts:
        current += tokenizer(text + "\n\n", add_special_tokens=False).input_ids
        while len(current) >= body and len(samples) < count:
            samples.append(opening + current[:body])
            current = current[body:]
        if len(samples) == count:
            return samples
    if len(current) >= 256 and len(samples) < count:
        samples.append(opening + current)
    return samples


@app.command("calibrate")
def calibrate_cmd(
    model: Annotated[
        str, typer.Argument(help="A packaged model name, a directory or a .gguf file.")
    ],
    samples: Annotated[
        Path,
        typer.Option(
            "--samples", help="Texts to calibrate on: .jsonl[.gz] with a text field, or .txt."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Where to write the JSON config.")],
    seq_len: Annotated[int, typer.Option("--seq-len", min=256, help="Tokens per sample.")] = 4096,
    budget: Annotated[
        float,
        typer.Option(
            "--budget",
            min=0.01,
            max=1.0,
            help="Mean density over all heads: the share of causal tiles the kernels compute.",
        ),
    ] = 0.25,
    max_samples: Annotated[
        int, typer.Option("--max-samples", min=1, help="Samples to average over.")
    ] = 3,
    tail_weight: Annotated[
        float,
        typer.Option(
            "--tail-weight",
            min=0.0,
            max=1.0,
            help="Weight of the last 64 query rows' recall (where a prompt's question sits) "
            "against all rows'.",
        ),
    ] = 0.0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda.")] = "auto",
    dtype: Annotated[
        str,
        typer.Option(
            "--dtype",
            help="auto (bfloat16 on a GPU, as prefill runs; float32 on a CPU), bfloat16, "
            "float16, float32.",
        ),
    ] = "auto",
    name: Annotated[
        str | None, typer.Option("--name", help="Model name to record (default: MODEL as given).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Search each head's best sparse-prefill pattern (A-shape, vertical-slash, block-sparse) by attention recall.

    Each pattern is tried at several sizes around the budget; every head's recall (softmax mass
    its pattern keeps, averaged over the samples) and measured density are read, and the budget
    is shared across all heads to maximise the mean recall. Use the output with
    `generator.hf: {prefill: {method: minference, config: PATH}}`.
    """
    import torch

    from ragline.attention.calibrate import calibrate_model
    from ragline.attention.hf import capture_queries_keys, model_head_dim
    from ragline.models.loader import load_causal_lm

    texts = read_sample_texts(samples)
    if dtype not in ("auto", "bfloat16", "float16", "float32"):
        raise UsageError(f"--dtype {dtype!r}: expected auto, bfloat16, float16 or float32")
    if dtype == "auto":
        cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        dtype = "bfloat16" if cuda else "float32"
    lm = load_causal_lm(model, dtype=dtype, device=device)
    token_samples = _token_samples(lm.tokenizer, texts, seq_len, max_samples)
    if not token_samples:
        raise UsageError(f"--samples {samples}: fewer than 256 tokens of text")
    # Sliding-window layers keep the model's own windowed attention at prefill (the runtime
    # routes them to SDPA): only full-attention layers are searched.
    n_layers = lm.model.config.num_hidden_layers
    kinds = getattr(lm.model.config, "layer_types", None) or ["full_attention"] * n_layers
    full = [i for i, kind in enumerate(kinds) if kind == "full_attention"]
    if not full:
        raise UsageError(f"{model}: no full-attention layers to calibrate (layer_types {kinds})")
    from ragline.kernels._common import kernel_refusal

    # the head dim alone: the GPU and dtype that will run the config are not known here
    why = kernel_refusal(model_head_dim(lm.model.config), torch.bfloat16)
    if why is not None:
        notice(f"{model}: {why}; this config can be measured (recall, density) but not run")
    if len(full) < n_layers:
        notice(
            f"calibrating the {len(full)} full-attention layers of {n_layers} ({full}); the "
            "sliding-window layers keep the model's own window and are written as dense"
        )
    captured = []
    with progress_bar("capturing queries and keys", total=len(token_samples)) as advance:
        for ids in token_samples:
            x = torch.tensor([ids], device=lm.device)
            # Kept on the model's device and in its dtype: on a GPU the recall runs through the
            # kernels exactly as prefill will (an 8B model's q/k at 8K take ~2.5 GB per sample
            # in bf16); on a CPU recall is computed in float32.
            qk = capture_queries_keys(lm.model, x)
            qk = [qk[i] for i in full]
            captured.append([(q, k) if q.is_cuda else (q.float(), k.float()) for q, k in qk])
            advance(1)
    length = min(len(s) for s in token_samples)
    captured = [[(q[:, :, :length], k[:, :, :length]) for q, k in s] for s in captured]
    config, report = calibrate_model(
        captured,
        name or model,
        length,
        budget,
        tail_weight=tail_weight,
        layer_ids=full,
        num_layers=n_layers,
        progress=True,
    )
    report["calibrated_layers"] = full
    out.parent.mkdir(parents=True, exist_ok=True)
    config.save(out)
    report.update({"out": str(out), "samples": len(token_samples), "seq_len": length})
    if not report["budget_met"]:
        typer.echo(
            f"warning: --budget {budget}: even the smallest patterns cost a mean density of "
            f"{report['chosen_mean_density']:.3f} at {length} tokens (whole diagonal blocks); "
            "the config uses them",
            err=True,
        )
    if as_json:
        print_json(report)
        return
    for c in report["candidates"]:
        print(
            f"{c['pattern']:<22} {c['sizes']}  density {c['density']:.3f}  "
            f"mean recall {c['mean_recall']:.4f}  last rows {c['tail_recall']:.4f}  "
            f"heads {c['heads_chosen']}"
        )
    counts = ", ".join(f"{k} {v}" for k, v in report["chosen_patterns"].items())
    print(
        f"chosen per head ({counts}): mean recall {report['chosen_mean_recall']:.4f} "
        f"(min {report['chosen_min_recall']:.4f}, last rows {report['chosen_tail_recall']:.4f}), "
        f"mean density {report['chosen_mean_density']:.3f} -> {out}"
    )
