"""``openai``: reasoning and summaries from any OpenAI-compatible chat-completions server.

Works with vLLM, Ollama, LM Studio and the like, through the official ``openai`` SDK:
``settings.openai_base_url`` (for example ``http://localhost:8000/v1``; a bare ``http://host:port``
gets ``/v1``), ``settings.openai_model`` and an optional ``settings.openai_api_key`` (sent as a
Bearer token, never shown in errors). The image travels as a base64 PNG data URL; the answer is
streamed. Every failure raises :class:`BackendUnavailableError` saying what to do next.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

from medrag.errors import BackendUnavailableError, ConfigError
from medrag.reasoners.base import BackendSpec, ReasoningRequest, register_reasoner, register_summariser
from medrag.reasoners.prompts import build_reasoning_messages, build_summary_messages
from medrag.reasoners.server_slots import DEFAULT_MAX_CONCURRENT, server_slot
from medrag.reasoners.summary import summarise_with_model
from medrag.records import CXRImage, Summary

if TYPE_CHECKING:
    import httpx2
    import openai
    from openai.types.chat import ChatCompletionChunk

    from medrag.config import Settings

#: (connect, read) seconds. The read timeout bounds the wait for *each* piece of the stream,
#: so a slow first token on a CPU server needs a generous value.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 120.0)
#: No automatic retries: a retried generation doubles a long wait, and the user can simply rerun.
DEFAULT_MAX_RETRIES = 0
#: Longest image side sent to the server; vision encoders resize far below this anyway.
MAX_IMAGE_SIDE = 1024
#: Longest piece of a server's own error text quoted in a message.
MAX_DETAIL_CHARS = 200
_HINT = "start the server or set MEDRAG_OPENAI_BASE_URL"
#: The SDK needs some key; a keyless server gets this and the Authorization header is dropped.
_NO_KEY = "no-key"
_MISSING = object()


# ---------------------------------------------------------------- helpers


def normalise_base_url(base_url: str) -> str:
    """``http(s)://host[:port][/path]`` without a trailing slash; a bare host gets ``/v1``."""
    url = base_url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"MEDRAG_OPENAI_BASE_URL must look like http://localhost:8000/v1, got {url!r}.")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def image_data_url(image: CXRImage, max_side: int = MAX_IMAGE_SIDE) -> str:
    """The image as ``data:image/png;base64,...`` (8-bit grayscale, longest side ≤ ``max_side``)."""
    from PIL import Image

    pil = Image.fromarray(image.uint8_pixels()).convert("L")
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
                if image_url is not None:
                    parts.append({"type": "image_url", "image_url": {"url": image_url}})
            else:
                parts.append({"type": "text", "text": str(part.get("text", ""))})
        if all(part["type"] == "text" for part in parts):
            converted.append({"role": message["role"], "content": "\n\n".join(p["text"] for p in parts)})
        else:
            converted.append({"role": message["role"], "content": parts})
    return converted


def error_text(body: object) -> str:
    """The human part of an error body: ``{"error": {"message": ...}}``, ``{"error": "..."}``,
    ``{"detail": "..."}`` (FastAPI servers) or plain text; ``""`` when there is none."""
    if isinstance(body, Mapping):
        for key in ("error", "message", "detail"):
            value = body.get(key)
            if isinstance(value, Mapping):
                return error_text(value)
            if isinstance(value, str):
                return value
        return ""
    return body if isinstance(body, str) else ""


def _content_type(response: httpx2.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


# ---------------------------------------------------------------- client


class OpenAIChatClient:
    """Streaming ``chat.completions`` against one server and model, with MedRAG's error messages."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self.model = model
        self._api_key = api_key or None
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_concurrent = max_concurrent
        self._client: openai.OpenAI | None = None

    def __repr__(self) -> str:
        return f"OpenAIChatClient(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def where(self) -> str:
        """The server, as error messages name it."""
        return f"the OpenAI-compatible server at {self.base_url}"

    def _sdk(self) -> openai.OpenAI:
        # Imported on first use: the SDK takes most of a second to import, and listing backends must not.
        import openai

        if self._client is None:
            connect, read = self.timeout
            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=self._api_key or _NO_KEY,
                timeout=openai.Timeout(read, connect=connect),
                max_retries=self.max_retries,
            )
        return self._client

    def _headers(self) -> dict[str, Any]:
        import openai

        # Organisation and project ids the SDK picks up from OPENAI_ORG_ID / OPENAI_PROJECT_ID are
        # meant for api.openai.com, not for a self-hosted server.
        headers: dict[str, Any] = {"OpenAI-Organization": openai.Omit(), "OpenAI-Project": openai.Omit()}
        if not self._api_key:
            headers["Authorization"] = openai.Omit()
        return headers

    def _mask(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _clip(self, text: str) -> str:
        # Mask before cutting: a cut through the key would leave a prefix the mask no longer matches.
        return " ".join(self._mask(str(text)).split())[:MAX_DETAIL_CHARS]

    def _fail(self, message: str) -> BackendUnavailableError:
        return BackendUnavailableError(self._mask(message))

    def _http_error(self, status: int, body: object) -> str:
        detail = self._clip(error_text(body))
        detail = f": {detail}" if detail else ""
        where = self.where
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

    def _request_failure(self, exc: openai.OpenAIError) -> BackendUnavailableError:
        """The error for a request that got no answer to stream (raised before the first byte)."""
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return self._fail(
                f"No answer from {self.where} within {self.timeout[1]:g} s; "
                "check that it is running and not overloaded."
            )
        if isinstance(exc, openai.APIConnectionError):
            return self._fail(f"Cannot connect to {self.where}; {_HINT}.")
        if isinstance(exc, openai.APIStatusError):
            return self._fail(self._http_error(exc.status_code, exc.body))
        return self._fail(f"Request to {self.where} failed ({type(exc).__name__}); {_HINT}.")

    def _stream_failure(self, exc: Exception) -> BackendUnavailableError:
        """The error for a stream that broke after the answer began."""
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return self._fail(
                f"{self.where} stopped sending for {self.timeout[1]:g} s; check the server or raise the timeout."
            )
        if isinstance(exc, openai.APIConnectionError):
            return self._fail(f"The connection to {self.where} broke mid-stream; check the server logs.")
        if isinstance(exc, openai.APIError):
            return self._fail(f"{self.where} reported an error mid-stream: {self._clip(exc.message)}")
        if isinstance(exc, ValueError):
            return self._fail(f"{self.where} sent a malformed stream event (not JSON); is it OpenAI-compatible?")
        return self._fail(f"The stream from {self.where} failed ({type(exc).__name__}); check the server logs.")

    def stream_chat(self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float) -> Iterator[str]:
        """Yield content pieces of the streamed answer (at most ``max_concurrent`` at once per server, see
        :mod:`medrag.reasoners.server_slots`); raise BackendUnavailableError on any failure."""
        import openai

        with server_slot(self.base_url, self.max_concurrent, self.timeout[1]):
            try:
                stream = self._sdk().chat.completions.create(
                    model=self.model,
                    messages=cast(Any, messages),
                    stream=True,
                    max_tokens=int(max_tokens),
                    temperature=float(temperature),
                    extra_headers=self._headers(),
                )
            except openai.OpenAIError as exc:
                raise self._request_failure(exc) from None
            with stream:
                if _content_type(stream.response) == "application/json":
                    # The server ignored stream=True and sent one completion.
                    yield from self._from_json(stream.response)
                else:
                    yield from self._from_stream(stream)

    def complete(self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float) -> str:
        """The whole streamed answer as one string."""
        return "".join(self.stream_chat(messages, max_tokens=max_tokens, temperature=temperature))

    def _from_json(self, response: httpx2.Response) -> Iterator[str]:
        import httpx2

        try:
            body = json.loads(response.read())
            text = body["choices"][0]["message"]["content"]
        except httpx2.HTTPError as exc:
            raise self._stream_failure(exc) from None
        except (ValueError, KeyError, IndexError, TypeError):
            raise self._fail(
                f"{self.base_url} sent a malformed completion; is it an OpenAI-compatible server?"
            ) from None
        if isinstance(text, str) and text:
            yield text

    def _from_stream(self, stream: openai.Stream[ChatCompletionChunk]) -> Iterator[str]:
        import openai

        finished = False
        chunks = iter(stream)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            except (openai.OpenAIError, ValueError) as exc:
                raise self._stream_failure(exc) from None
            # The SDK builds chunks without validation: check the shape before trusting it.
            choices = getattr(chunk, "choices", None)
            if not isinstance(choices, list):
                raise self._fail(f"{self.where} sent a stream event without 'choices'; is it OpenAI-compatible?")
            for choice in choices[:1]:
                delta = getattr(choice, "delta", _MISSING)
                if delta is _MISSING:
                    raise self._fail(f"{self.where} sent a malformed stream event; is it OpenAI-compatible?")
                piece = getattr(delta, "content", None)
                if isinstance(piece, str) and piece:
                    yield piece
                if getattr(choice, "finish_reason", None):
                    finished = True
        # The SDK ends quietly on a cut connection as on [DONE]; only a finish_reason tells them apart.
        if not finished:
            raise self._fail(f"The stream from {self.where} ended early (no finish_reason); check the server logs.")

    def list_models(self) -> list[str]:
        """Model ids the server offers (``GET /models``), to check that it is up."""
        import openai

        try:
            timeout = openai.Timeout(10.0, connect=self.timeout[0])
            page = self._sdk().models.list(extra_headers=self._headers(), timeout=timeout)
            return [str(model.id) for model in page.data]
        except openai.APIStatusError as exc:
            raise self._fail(self._http_error(exc.status_code, exc.body)) from None
        except openai.OpenAIError:
            raise self._fail(f"Cannot reach {self.where}; {_HINT}.") from None
        except (ValueError, TypeError, AttributeError):
            raise self._fail(f"{self.where} sent a malformed model list; is it OpenAI-compatible?") from None


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


class OpenAISummariser:
    """The server's one-line label plus findings from :func:`medrag.labels.label_text`."""

    def __init__(self, client: OpenAIChatClient, *, name: str = "openai", max_tokens: int = 48) -> None:
        self.client = client
        self.name = name
        self.model = client.model
        self.max_tokens = max_tokens

    def generate_label(self, text: str) -> str:
        """The server's raw (temperature 0) answer to the summary prompt for ``text``."""
        messages = to_openai_messages(build_summary_messages(text), None)
        return self.client.complete(messages, max_tokens=self.max_tokens, temperature=0.0)

    def summarise(self, text: str) -> Summary:
        """Ask the server for a label; derive findings with the rule labeler (label falls back to its own)."""
        return summarise_with_model(text, self.generate_label, backend=self.name)


def _client_from(settings: Settings, what: str) -> OpenAIChatClient:
    if not settings.openai_base_url:
        raise BackendUnavailableError(
            f"The openai {what} needs an OpenAI-compatible server (vLLM, Ollama, LM Studio): start one "
            "and set MEDRAG_OPENAI_BASE_URL, e.g. http://localhost:8000/v1."
        )
    return OpenAIChatClient(settings.openai_base_url, settings.openai_model, settings.openai_api_key,
                            timeout=(settings.openai_connect_timeout, settings.openai_timeout),
                            max_concurrent=settings.openai_max_concurrent)


def _reasoner_factory(settings: Settings) -> OpenAIReasoner:
    return OpenAIReasoner(
        _client_from(settings, "reasoner"), max_tokens=settings.max_new_tokens, temperature=settings.temperature
    )


def _summariser_factory(settings: Settings) -> OpenAISummariser:
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
