"""Mock-provider answers in the exact OpenAI wire format (chat completions, chunks, embeddings, errors)."""

from __future__ import annotations

import json
import time

from harness import Recorded, Reply


def chat_completion(model: str, content: str, prompt_tokens: int = 9, completion_tokens: int = 4) -> dict:
    return {
        "id": "chatcmpl-upstream123",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_upstream",
    }


def chunk(model: str, delta: dict, finish=None, usage=None, choices=True) -> str:
    c = {
        "id": "chatcmpl-upstream123",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_upstream",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else [],
        "obfuscation": "x1y2",
    }
    if usage is not None:
        c["usage"] = usage
    return "data: " + json.dumps(c) + "\n\n"


def embeddings(model: str, n: int) -> dict:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": [0.1 * (i + 1), -0.2, 0.3]} for i in range(n)],
        "model": model,
        "usage": {"prompt_tokens": 3 * n, "total_tokens": 3 * n},
    }


def echo_responder(req: Recorded) -> Reply:
    """Answers chat with the upstream model name it was asked for, and embeddings with float vectors."""
    body = req.json()
    model = body.get("model", "?")
    if req.path.split("?")[0].endswith("/embeddings"):
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return Reply(body=json.dumps(embeddings(model, len(inputs))).encode())
    return Reply(body=json.dumps(chat_completion(model, f"served by {model}")).encode())


def error(status: int, message: str, type_: str, code: str | None) -> Reply:
    return Reply(status=status, body=json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode())
