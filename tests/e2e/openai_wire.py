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


# ---------------------------------------------------------------------- chat completions with tool calls


def chat_tool_calls(calls) -> list[dict]:
    """calls: (id, name, arguments as a dict) → a chat message's `tool_calls`."""
    return [{"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}} for cid, name, args in calls]


def chat_completion_full(model: str, content: str | None, calls=(), finish: str = "stop", usage=(9, 4, 0)) -> dict:
    """A chat completion with text and/or tool calls, any finish reason, and usage (prompt, completion,
    cached)."""
    c = chat_completion(model, content, usage[0], usage[1])
    msg = c["choices"][0]["message"]
    if calls:
        msg["tool_calls"] = chat_tool_calls(calls)
    c["choices"][0]["finish_reason"] = finish
    c["usage"]["prompt_tokens_details"]["cached_tokens"] = usage[2]
    return c


def chat_stream(model: str, text_pieces=(), calls=(), finish: str = "stop", usage=(9, 4, 0), include_usage: bool = False,
                done: bool = True) -> list[str]:
    """A streamed chat completion as OpenAI sends it. calls: (id, name, [argument pieces]): the first chunk
    of a call carries its id, type, name and an empty `arguments`, later ones only `index` and pieces. The
    usage chunk (`choices: []`) only with `include_usage`, as OpenAI does."""
    out = [chunk(model, {"role": "assistant", "content": "" if not calls or text_pieces else None, "refusal": None})]
    for p in text_pieces:
        out.append(chunk(model, {"content": p}))
    for i, (cid, name, pieces) in enumerate(calls):
        out.append(chunk(model, {"tool_calls": [{"index": i, "id": cid, "type": "function",
                                                 "function": {"name": name, "arguments": ""}}]}))
        for p in pieces:
            out.append(chunk(model, {"tool_calls": [{"index": i, "function": {"arguments": p}}]}))
    out.append(chunk(model, {}, finish=finish))
    if include_usage:
        out.append(chunk(model, {}, usage={
            "prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": usage[0] + usage[1],
            "prompt_tokens_details": {"cached_tokens": usage[2], "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}, choices=False))
    if done:
        out.append("data: [DONE]\n\n")
    return out


# --------------------------------------------------------------------------------- OpenAI Responses API
# The shapes of `openai/types/responses/` (Response, its output items, ResponseUsage, ResponseStreamEvent):
# what OpenAI's own `POST /v1/responses` answers, for the providers that get the Responses API natively.


def responses_usage(usage=(12, 5, 0, 0)) -> dict:
    """usage: (input, output, cached input, reasoning)."""
    inp, out, cached, reasoning = (tuple(usage) + (0, 0))[:4]
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out,
    }


def responses_message_item(text: str, item_id: str = "msg_upstream01", status: str = "completed") -> dict:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def responses_call_item(call_id: str, name: str, arguments: str, n: int = 0, status: str = "completed") -> dict:
    return {"id": f"fc_upstream{n:02d}", "type": "function_call", "status": status, "arguments": arguments,
            "call_id": call_id, "name": name}


def response_object(model: str, text: str | None = None, calls=(), status: str = "completed", incomplete_reason: str | None = None,
                    usage=(12, 5, 0, 0), response_id: str = "resp_upstream0123456789", output: list | None = None,
                    error: dict | None = None) -> dict:
    """A `Response` as OpenAI answers it. calls: (call_id, name, arguments as a dict). `output` replaces
    the items made from text and calls (for a stream's lifecycle events)."""
    if output is None:
        item_status = "incomplete" if status == "incomplete" else "completed"
        output = []
        if text is not None:
            output.append(responses_message_item(text, status=item_status))
        for n, (cid, name, args) in enumerate(calls):
            output.append(responses_call_item(cid, name, json.dumps(args), n))
    done = status in ("completed", "incomplete", "failed")
    return {
        "id": response_id,
        "object": "response",
        "created_at": 1741476542,
        "status": status,
        "background": False,
        "completed_at": 1741476543 if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": None,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": None,
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": responses_usage(usage) if done and usage is not None else None,
        "user": None,
        "metadata": {},
    }


def _rev(data: dict) -> str:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n"


def response_events(model: str, text_pieces=(), calls=(), status: str = "completed", incomplete_reason: str | None = None,
                    usage=(12, 5, 0, 0), fail: str | None = None, end: bool = True) -> list[str]:
    """A streamed Response as OpenAI sends it: `event: TYPE` + `data: {...}` with increasing
    `sequence_number`, no [DONE]. calls: (call_id, name, [argument pieces]). `fail`: after the text, a
    `response.failed` with this message instead of the rest. `end=False` stops before the final event."""
    events: list[dict] = []

    def ev(**data):
        data["sequence_number"] = len(events)
        events.append(data)

    def lifecycle(kind: str, st: str, output: list, **kw) -> None:
        ev(type=kind, response=response_object(model, status=st, output=output, usage=usage, **kw))

    lifecycle("response.created", "in_progress", [])
    lifecycle("response.in_progress", "in_progress", [])
    done_items: list[dict] = []
    index = 0
    item_status = "incomplete" if status == "incomplete" else "completed"
    if text_pieces:
        mid = "msg_upstream01"
        ev(type="response.output_item.added", output_index=index,
           item={"id": mid, "type": "message", "status": "in_progress", "role": "assistant", "content": []})
        ev(type="response.content_part.added", item_id=mid, output_index=index, content_index=0,
           part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
        for p in text_pieces:
            ev(type="response.output_text.delta", item_id=mid, output_index=index, content_index=0, delta=p, logprobs=[])
        if fail is not None:
            lifecycle("response.failed", "failed", [], error={"code": "server_error", "message": fail})
            return [_rev(e) for e in events]
        text = "".join(text_pieces)
        ev(type="response.output_text.done", item_id=mid, output_index=index, content_index=0, text=text, logprobs=[])
        ev(type="response.content_part.done", item_id=mid, output_index=index, content_index=0,
           part={"type": "output_text", "text": text, "annotations": [], "logprobs": []})
        item = responses_message_item(text, mid, item_status)
        ev(type="response.output_item.done", output_index=index, item=item)
        done_items.append(item)
        index += 1
    for n, (cid, name, pieces) in enumerate(calls):
        fid = f"fc_upstream{n:02d}"
        ev(type="response.output_item.added", output_index=index, item=responses_call_item(cid, name, "", n, "in_progress"))
        for p in pieces:
            ev(type="response.function_call_arguments.delta", item_id=fid, output_index=index, delta=p)
        args = "".join(pieces)
        ev(type="response.function_call_arguments.done", item_id=fid, output_index=index, arguments=args)
        item = responses_call_item(cid, name, args, n)
        ev(type="response.output_item.done", output_index=index, item=item)
        done_items.append(item)
        index += 1
    if end:
        final = "response.incomplete" if status == "incomplete" else "response.completed"
        lifecycle(final, status, done_items, incomplete_reason=incomplete_reason)
    return [_rev(e) for e in events]


def response_error_event(message: str, sequence_number: int, code: str = "server_error") -> str:
    """The typed `error` event of a Responses stream."""
    return _rev({"type": "error", "code": code, "message": message, "param": None, "sequence_number": sequence_number})
