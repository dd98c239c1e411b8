"""``openai``: reasoning and summaries from any OpenAI-compatible chat-completions server.

Works with vLLM, Ollama, LM Studio and the like: ``settings.openai_base_url`` (for example
``http://localhost:8000/v1``; a bare ``http://host:port`` gets ``/v1``), ``settings.openai_model``
and an optional ``settings.openai_api_key`` (sent as a Bearer token, never shown in errors).
The image travels as a base64 PNG data URL; the answer is streamed with server-sent events.
Every failure raises :class:`BackendUnavailableError` saying what to do next.
"""

from __future__ import annotations

import base64
import codecs
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from medrag.errors import BackendUnavailableError, ConfigError
from medrag.reasoners.base import BackendSpec, ReasoningRequest, register_reasoner, register_summariser
from medrag.reasoners.prompts import build_reasoning_messages, build_summary_messages
from medrag.records import CXRImage, Summary

if TYPE_CHECKING:
    import requests

    from medrag.config import Settings

#: (connect, read) seconds. The read timeout bounds the wait for *each* piece of the stream,
#: so a slow first token on a CPU server needs a generous value.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 120.0)
#: Longest image side sent to the server; vision encoders resize far below this anyway.
MAX_IMAGE_SIDE = 1024
_MAX_ERROR_BODY = 2048
_HINT = "start the server or set MEDRAG_OPENAI_BASE_URL"


# ---------------------------------------------------------------- server-sent events


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched server-sent event."""

    data: str
    event: str = "message"
    id: str = ""


def iter_sse(chunks: Iterable[bytes]) -> Iterator[SSEEvent]:
    """Parse a ``text/event-stream`` byte stream into events (WHATWG rules).

    Lines end in CR, LF or CRLF (also split across chunks); ``:`` lines are comments
    (keep-alives); several ``data:`` lines join with newlines; a blank line dispatches; an
    event still pending when the stream ends is dispatched too (lenient servers omit the
    final blank line). UTF-8 split across chunks is decoded correctly.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    buffer = ""
    data: list[str] = []
    event_type = ""
    last_id = ""

    def lines_from(text: str, final: bool) -> tuple[list[str], str]:
        out: list[str] = []
        start = 0
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\n" or ch == "\r":
                if ch == "\r" and i + 1 == len(text) and not final:
                    break  # a CR at the chunk end may be half of CRLF
                out.append(text[start:i])
                if ch == "\r" and i + 1 < len(text) and text[i + 1] == "\n":
                    i += 1
                start = i + 1
            i += 1
        return out, text[start:]

    def feed(lines: list[str]) -> Iterator[SSEEvent]:
        nonlocal data, event_type, last_id
        for line in lines:
            if line == "":
                if data:
                    yield SSEEvent("\n".join(data), event_type or "message", last_id)
                data, event_type = [], ""
                continue
            if line.startswith(":"):
                continue
            field, sep, value = line.partition(":")
            if sep and value.startswith(" "):
                value = value[1:]
            if field == "data":
                data.append(value)
            elif field == "event":
                event_type = value
            elif field == "id" and "\0" not in value:
                last_id = value

    first = True
    for chunk in chunks:
        if not chunk:
            continue
        text = decoder.decode(chunk)
        if first:
            text = text.removeprefix("\ufeff")
            first = False
        lines, buffer = lines_from(buffer + text, final=False)
        yield from feed(lines)
    lines, rest = lines_from(buffer + decoder.decode(b"", final=True), final=True)
    yield from feed(lines + ([rest] if rest else []) + [""])


# ---------------------------------------------------------------- helpers


def normalise_base_url(base_url: str) -> str:
    """``http(s)://host[:port][/path]`` without a trailing slash; a bare host gets ``/v1``."""
    url = base_url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"MEDRAG_OPENAI_BASE_URL must look like http://localhost:8000/v1, got {url!r}."
        )
    path = parts.path.rstrip("/")
    if not path:
        path = "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    try:
        from medrag.imaging import to_uint8
    except ImportError:
        arr = np.nan_to_num(np.asarray(pixels, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.asarray(to_uint8(pixels), dtype=np.uint8)


def image_data_url(image: CXRImage, max_side: int = MAX_IMAGE_SIDE) -> str:
    """The image as ``data:image/png;base64,...`` (8-bit grayscale, longest side ≤ ``max_side``)."""
    from PIL import Image

    pil = Image.fromarray(_to_uint8(image.pixels)).convert("L")
    if max(pil.size) > max_side:
        pil.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def to_openai_messages(messages: list[dict[str, Any]], image_url: str | None) -> list[dict[str, Any]]:
    """Fill ``{"type": "image"}`` placeholders with ``image_url`` parts; text-only content becomes a string.

    Several servers (older Ollama, LM Studio) reject a list as system content, so a message
    with only text parts is sent as one string.
    """
    converted: list[dict[str, Any]] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            converted.append({"role": message["role"], "content": content})
            continue
        parts: list[dict[str, Any]] = []
        for part in content:
            if part.get("type") == "image":
                if image_url is None:
                    continue
                parts.append({"type": "image_url", "image_url": {"url": image_url}})
            else:
                parts.append({"type": "text", "text": str(part.get("text", ""))})
        if all(part["type"] == "text" for part in parts):
            converted.append({"role": message["role"], "content": "\n\n".join(p["text"] for p in parts)})
        else:
            converted.append({"role": message["role"], "content": parts})
    return converted


def _error_detail(response: "requests.Response") -> str:
    import requests

    try:
        raw = next(response.iter_content(chunk_size=_MAX_ERROR_BODY), b"")
    except requests.RequestException:
        raw = b""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", ""))[:200]
    if isinstance(error, str):
        return error[:200]
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"][:200]
    return ""


def _iter_body(response: "requests.Response") -> Iterator[bytes]:
    """Body bytes as soon as they arrive, chunked or close-delimited.

    ``iter_content(None)`` only streams chunked responses; on a close-delimited stream it
    waits for the end, so ``read1`` (whatever is available) is used when urllib3 has it.
    urllib3 errors are re-raised as the ``requests`` errors the caller handles.
    """
    import requests
    import urllib3.exceptions

    raw = response.raw
    if not hasattr(raw, "read1"):
        yield from response.iter_content(chunk_size=None)
        return
    while True:
        try:
            data = raw.read1(8192, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise requests.exceptions.ReadTimeout(exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise requests.exceptions.ChunkedEncodingError(exc) from None
        if not data:
            return
        yield data


# ---------------------------------------------------------------- client


class OpenAIChatClient:
    """Minimal streaming client for ``POST {base_url}/chat/completions``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self.model = model
        self._api_key = api_key or None
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"OpenAIChatClient(base_url={self.base_url!r}, model={self.model!r})"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _fail(self, message: str) -> BackendUnavailableError:
        if self._api_key:
            message = message.replace(self._api_key, "***")
        return BackendUnavailableError(message)

    def stream_chat(
        self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float
    ) -> Iterator[str]:
        """Yield content pieces of the streamed answer; raise BackendUnavailableError on any failure."""
        import requests

        where = f"the OpenAI-compatible server at {self.base_url}"
        body = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "max_tokens": int(max_tokens),
            "temperature": float(temperature),
        }
        try:
            response = requests.post(
                self.base_url + "/chat/completions",
                json=body,
                headers=self._headers(),
                timeout=self.timeout,
                stream=True,
            )
        except requests.Timeout:
            raise self._fail(
                f"No answer from {where} within {self.timeout[1]:g} s; check that it is running and not overloaded."
            ) from None
        except requests.ConnectionError:
            raise self._fail(f"Cannot connect to {where}; {_HINT}.") from None
        except requests.RequestException as exc:
            raise self._fail(f"Request to {where} failed ({type(exc).__name__}); {_HINT}.") from None
        with response:
            if response.status_code >= 400:
                raise self._fail(self._http_error(response, where))
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            try:
                if content_type == "application/json":
                    # The server ignored stream=True and sent one completion.
                    yield from self._from_json(response)
                else:
                    yield from self._from_sse(response, where)
            except requests.RequestException as exc:
                cause = exc.args[0] if exc.args else None
                if isinstance(exc, requests.Timeout) or "timed out" in str(cause).lower():
                    raise self._fail(
                        f"{where} stopped sending for {self.timeout[1]:g} s; check the server or raise the timeout."
                    ) from None
                raise self._fail(f"The connection to {where} broke mid-stream; check the server logs.") from None

    def complete(self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float) -> str:
        """The whole streamed answer as one string."""
        return "".join(self.stream_chat(messages, max_tokens=max_tokens, temperature=temperature))

    def _http_error(self, response: "requests.Response", where: str) -> str:
        status = response.status_code
        detail = _error_detail(response)
        detail = f": {detail}" if detail else ""
        if status in (401, 403):
            return f"{where} refused the request (HTTP {status}{detail}); check OPENAI_API_KEY."
        if status == 404:
            return (
                f"{where} answered HTTP 404{detail}; check MEDRAG_OPENAI_MODEL ({self.model!r}) and that "
                "MEDRAG_OPENAI_BASE_URL ends with /v1."
            )
        if status >= 500:
            return f"{where} failed (HTTP {status}{detail}); check the server logs or restart it."
        return f"{where} rejected the request (HTTP {status}{detail}); check the model name and server options."

    def _from_json(self, response: "requests.Response") -> Iterator[str]:
        try:
            body = response.json()
            text = body["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise self._fail(f"{self.base_url} sent a malformed completion; is it an OpenAI-compatible server?") from None
        if isinstance(text, str) and text:
            yield text

    def _from_sse(self, response: "requests.Response", where: str) -> Iterator[str]:
        finished = False
        for event in iter_sse(_iter_body(response)):
            if event.data.strip() == "[DONE]":
                return
            try:
                payload = json.loads(event.data)
            except ValueError:
                raise self._fail(f"{where} sent a malformed stream event (not JSON); is it OpenAI-compatible?") from None
            if not isinstance(payload, dict):
                raise self._fail(f"{where} sent a malformed stream event; is it OpenAI-compatible?")
            if payload.get("error"):
                error = payload["error"]
                message = error.get("message", "") if isinstance(error, dict) else str(error)
                raise self._fail(f"{where} reported an error mid-stream: {str(message)[:200]}")
            choices = payload.get("choices")
            if not isinstance(choices, list):
                raise self._fail(f"{where} sent a stream event without 'choices'; is it OpenAI-compatible?")
            for choice in choices[:1]:
                if not isinstance(choice, dict):
                    raise self._fail(f"{where} sent a malformed stream event; is it OpenAI-compatible?")
                delta = choice.get("delta") or {}
                piece = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(piece, str) and piece:
                    yield piece
                if choice.get("finish_reason"):
                    finished = True
        if not finished:
            raise self._fail(f"The stream from {where} ended early (no [DONE]); check the server logs.")

    def list_models(self) -> list[str]:
        """Model ids the server offers (``GET /models``), to check that it is up."""
        import requests

        where = f"the OpenAI-compatible server at {self.base_url}"
        try:
            response = requests.get(self.base_url + "/models", headers=self._headers(), timeout=(self.timeout[0], 10.0))
        except requests.RequestException:
            raise self._fail(f"Cannot reach {where}; {_HINT}.") from None
        if response.status_code >= 400:
            raise self._fail(self._http_error(response, where))
        try:
            return [str(m["id"]) for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise self._fail(f"{where} sent a malformed model list; is it OpenAI-compatible?") from None


# ---------------------------------------------------------------- backends


class OpenAIReasoner:
    """Streams step-wise reasoning from an OpenAI-compatible server (image sent as a data URL)."""

    def __init__(
        self,
        client: OpenAIChatClient,
        *,
        max_tokens: int = 512,
        temperature: float = 0.2,
        name: str = "openai",
    ) -> None:
        self.client = client
        self.name = name
        self.model = client.model
        self.max_tokens = max_tokens
        self.temperature = temperature

    def stream(self, request: ReasoningRequest) -> Iterator[str]:
        """Yield reasoning text pieces as the server produces them."""
        url = image_data_url(request.image) if request.image is not None else None
        messages = to_openai_messages(build_reasoning_messages(request, include_image=url is not None), url)
        yield from self.client.stream_chat(messages, max_tokens=self.max_tokens, temperature=self.temperature)


#: Shown with the label when a model summariser returned nothing usable and the rule label stands in.
NO_MODEL_LABEL = "The model gave no usable label; the rule-based label is shown."


def clean_label(text: str, max_chars: int = 120) -> str:
    """The first meaningful line of a model's label answer, without quotes, markdown or a ``Label:`` prefix."""
    for line in text.splitlines():
        line = line.strip().lstrip("#*->• ").strip()
        lowered = line.lower()
        for prefix in ("label:", "summary:", "impression:"):
            if lowered.startswith(prefix):
                line = line[len(prefix):].strip()
                break
        line = line.strip("\"'`*_ ").rstrip(".").strip()
        if line:
            return line[:max_chars].rstrip()
    return ""


class OpenAISummariser:
    """The server's one-line label plus findings from :func:`medrag.labels.label_text`."""

    def __init__(self, client: OpenAIChatClient, *, name: str = "openai", max_tokens: int = 48) -> None:
        self.client = client
        self.name = name
        self.model = client.model
        self.max_tokens = max_tokens

    def summarise(self, text: str) -> Summary:
        """Ask the server for a label; derive findings with the rule labeler (label falls back to its own)."""
        try:
            from medrag.labels import label_text
        except ImportError as exc:
            raise BackendUnavailableError(
                "The openai summariser needs medrag.labels for findings; reinstall MedRAG "
                "(`pip install -r requirements.txt`)."
            ) from exc
        rules = label_text(text)
        messages = to_openai_messages(build_summary_messages(text), None)
        answer = self.client.complete(messages, max_tokens=self.max_tokens, temperature=0.0)
        label = clean_label(answer)
        notes = rules.notes if label else (*rules.notes, NO_MODEL_LABEL)
        return Summary(label=label or rules.label, findings=rules.findings, backend=self.name, notes=notes)


def _client_from(settings: "Settings", what: str) -> OpenAIChatClient:
    if not settings.openai_base_url:
        raise BackendUnavailableError(
            f"The openai {what} needs an OpenAI-compatible server (vLLM, Ollama, LM Studio): start one "
            "and set MEDRAG_OPENAI_BASE_URL, e.g. http://localhost:8000/v1."
        )
    return OpenAIChatClient(settings.openai_base_url, settings.openai_model, settings.openai_api_key)


def _reasoner_factory(settings: "Settings") -> OpenAIReasoner:
    return OpenAIReasoner(
        _client_from(settings, "reasoner"), max_tokens=settings.max_new_tokens, temperature=settings.temperature
    )


def _summariser_factory(settings: "Settings") -> OpenAISummariser:
    return OpenAISummariser(_client_from(settings, "summariser"))


register_reasoner(
    BackendSpec(
        name="openai",
        factory=_reasoner_factory,
        description="Any OpenAI-compatible chat server (vLLM, Ollama, LM Studio) at MEDRAG_OPENAI_BASE_URL.",
        offline=False,
    )
)
register_summariser(
    BackendSpec(
        name="openai",
        factory=_summariser_factory,
        description="Label from an OpenAI-compatible server plus rule-based findings.",
        offline=False,
    )
)
