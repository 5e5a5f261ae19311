"""Mock-provider answers in the exact wire formats of Anthropic, Gemini and Bedrock, for the end-to-end
tests. Shapes follow each provider's public API reference (and the official SDKs' type definitions)."""

from __future__ import annotations

import binascii
import json
import struct

from harness import Recorded, Reply

# ------------------------------------------------------------------------------------------- Anthropic


def anthropic_message(model: str, text: str | None = None, tool_uses=(), stop_reason="end_turn", usage=(12, 5, 0)) -> dict:
    content = []
    if text is not None:
        content.append({"type": "text", "text": text})
    for tid, name, inp in tool_uses:
        content.append({"type": "tool_use", "id": tid, "name": name, "input": inp})
    inp_tokens, out_tokens, cache_read = usage
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": inp_tokens,
            "output_tokens": out_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cache_read,
        },
    }


def _ev(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def anthropic_stream(model: str, text_pieces=(), tool_uses=(), stop_reason="end_turn", usage=(12, 5)) -> list[str]:
    """tool_uses: (id, name, [partial_json pieces])."""
    out = [_ev("message_start", {"type": "message_start", "message": {
        "id": "msg_stream01", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": usage[0], "output_tokens": 1}}})]
    out.append(_ev("ping", {"type": "ping"}))
    index = 0
    if text_pieces:
        out.append(_ev("content_block_start", {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}))
        for p in text_pieces:
            out.append(_ev("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}}))
        out.append(_ev("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    for tid, name, pieces in tool_uses:
        out.append(_ev("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": {"type": "tool_use", "id": tid, "name": name, "input": {}}}))
        for p in [""] + list(pieces):
            out.append(_ev("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "input_json_delta", "partial_json": p}}))
        out.append(_ev("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    out.append(_ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                     "usage": {"output_tokens": usage[1]}}))
    out.append(_ev("message_stop", {"type": "message_stop"}))
    return out


def anthropic_error(status: int, type_: str, message: str) -> Reply:
    return Reply(status=status, body=json.dumps({"type": "error", "error": {"type": type_, "message": message}}).encode())


# ---------------------------------------------------------------------------------------------- Gemini


def gemini_response(text: str | None = None, calls=(), finish="STOP", usage=(10, 4, 0)) -> dict:
    parts = []
    if text is not None:
        parts.append({"text": text})
    for name, args in calls:
        parts.append({"functionCall": {"name": name, "args": args}})
    prompt, cand, cached = usage
    meta = {"promptTokenCount": prompt, "candidatesTokenCount": cand, "totalTokenCount": prompt + cand}
    if cached:
        meta["cachedContentTokenCount"] = cached
    return {
        "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0}],
        "usageMetadata": meta,
        "modelVersion": "gemini-2.0-flash",
        "responseId": "resp-gemini-01",
    }


def gemini_stream(text_pieces=(), calls=(), finish="STOP", usage=(10, 4)) -> list[str]:
    out = []
    for i, p in enumerate(text_pieces):
        ev = {"candidates": [{"content": {"parts": [{"text": p}], "role": "model"}, "index": 0}],
              "usageMetadata": {"promptTokenCount": usage[0], "totalTokenCount": usage[0]},
              "modelVersion": "gemini-2.0-flash", "responseId": "resp-gemini-02"}
        out.append("data: " + json.dumps(ev) + "\r\n\r\n")
    last = gemini_response(None, calls, finish, (usage[0], usage[1], 0))
    last["responseId"] = "resp-gemini-02"
    if not calls:
        last["candidates"][0]["content"]["parts"] = [{"text": ""}]
    out.append("data: " + json.dumps(last) + "\r\n\r\n")
    return out


def gemini_error(status: int, grpc_status: str, message: str) -> Reply:
    return Reply(status=status, body=json.dumps({"error": {"code": status, "message": message, "status": grpc_status}}).encode())


# --------------------------------------------------------------------------------------------- Bedrock


def bedrock_converse(text: str | None = None, tool_uses=(), stop="end_turn", usage=(11, 6)) -> dict:
    content = []
    if text is not None:
        content.append({"text": text})
    for tid, name, inp in tool_uses:
        content.append({"toolUse": {"toolUseId": tid, "name": name, "input": inp}})
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": {"inputTokens": usage[0], "outputTokens": usage[1], "totalTokens": usage[0] + usage[1]},
        "metrics": {"latencyMs": 120},
    }


def _header(name: str, value: str) -> bytes:
    n = name.encode()
    v = value.encode()
    return struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v


def eventstream_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One message of the AWS binary event-stream format, with real CRC32s."""
    hdrs = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(hdrs) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hdrs))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    msg = prelude + hdrs + payload
    return msg + struct.pack(">I", binascii.crc32(msg) & 0xFFFFFFFF)


def bedrock_event(event_type: str, payload: dict) -> bytes:
    payload = dict(payload, p="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ")
    return eventstream_frame(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload).encode(),
    )


def bedrock_exception(exc_type: str, message: str) -> bytes:
    return eventstream_frame(
        {":exception-type": exc_type, ":content-type": "application/json", ":message-type": "exception"},
        json.dumps({"message": message}).encode(),
    )


def bedrock_stream(text_pieces=(), tool_uses=(), stop="end_turn", usage=(11, 6)) -> list[bytes]:
    """tool_uses: (id, name, [input json pieces])."""
    out = [bedrock_event("messageStart", {"role": "assistant"})]
    index = 0
    if text_pieces:
        for p in text_pieces:
            out.append(bedrock_event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": p}}))
        out.append(bedrock_event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    for tid, name, pieces in tool_uses:
        out.append(bedrock_event("contentBlockStart", {"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": tid, "name": name}}}))
        for p in pieces:
            out.append(bedrock_event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": p}}}))
        out.append(bedrock_event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    out.append(bedrock_event("messageStop", {"stopReason": stop}))
    out.append(bedrock_event("metadata", {"usage": {"inputTokens": usage[0], "outputTokens": usage[1], "totalTokens": sum(usage)},
                                          "metrics": {"latencyMs": 99}}))
    return out


def sigv4_check(rec: Recorded, access_key: str, secret_key: str, region: str, token: str | None = None) -> str | None:
    """Checks a request's SigV4 signature with botocore (the AWS SDK's own signer). Returns None when the
    signature is right, else what is wrong."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth_header = rec.headers.get("authorization", "")
    if not auth_header.startswith("AWS4-HMAC-SHA256 "):
        return f"no SigV4 authorization header: {auth_header[:40]!r}"
    fields = dict(part.strip().split("=", 1) for part in auth_header[len("AWS4-HMAC-SHA256 "):].split(","))
    signed = fields["SignedHeaders"].split(";")
    amz_date = rec.headers.get("x-amz-date")
    if not amz_date:
        return "no x-amz-date"
    if token is not None and rec.headers.get("x-amz-security-token") != token:
        return "missing or wrong x-amz-security-token"
    headers = {h: rec.headers[h] for h in signed if h in rec.headers}
    if set(headers) != set(signed):
        return f"signed headers missing from the request: {set(signed) - set(headers)}"
    req = AWSRequest(method=rec.method, url=f"https://{rec.headers['host']}{rec.path}", data=rec.body, headers=headers)
    req.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret_key, token), "bedrock", region)
    canonical = signer.canonical_request(req)
    want = signer.signature(signer.string_to_sign(req, canonical), req)
    scope = fields["Credential"].split("/", 1)
    if scope[0] != access_key or scope[1] != f"{amz_date[:8]}/{region}/bedrock/aws4_request":
        return f"wrong credential scope {fields['Credential']}"
    if fields["Signature"] != want:
        return f"signature mismatch (canonical request botocore expects:\n{canonical})"
    return None
