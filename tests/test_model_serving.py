"""A shared inference server (vLLM / Ollama) for a class: its settings, a concurrency limit, and what happens
when it is down or busy (the offline reasoner takes over, with a note). Real servers on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakeservers import FakeServer, Reply, chat_chunk, dead_url, sse
from medrag.config import Settings, load_settings
from medrag.errors import BackendUnavailableError, ConfigError
from medrag.pipeline import run_analysis
from medrag.reasoners.openai import OpenAIChatClient, OpenAIReasoner, _reasoner_factory

ROUTE = "POST /v1/chat/completions"


def _answer(**kw: object) -> Reply:
    events = [chat_chunk("### Impression\n"), chat_chunk("- Small right effusion."), chat_chunk(None, "stop")]
    return Reply(chunks=sse(*events), **kw)  # type: ignore[arg-type]


def test_serving_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDRAG_OPENAI_TIMEOUT", "7.5")
    monkeypatch.setenv("MEDRAG_OPENAI_CONNECT_TIMEOUT", "1.5")
    monkeypatch.setenv("MEDRAG_OPENAI_MAX_CONCURRENT", "2")
    monkeypatch.setenv("MEDRAG_OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    settings = load_settings(secrets_path=tmp_path / "none.toml", data_dir=tmp_path)
    assert (settings.openai_timeout, settings.openai_connect_timeout, settings.openai_max_concurrent) == (7.5, 1.5, 2)
    client = _reasoner_factory(settings).client
    assert client.timeout == (1.5, 7.5) and client.max_concurrent == 2


@pytest.mark.parametrize(("variable", "value", "needle"), [
    ("MEDRAG_OPENAI_TIMEOUT", "soon", "MEDRAG_OPENAI_TIMEOUT must be a number of seconds"),
    ("MEDRAG_OPENAI_TIMEOUT", "0", "set MEDRAG_OPENAI_TIMEOUT"),
    ("MEDRAG_OPENAI_CONNECT_TIMEOUT", "nan", "set MEDRAG_OPENAI_CONNECT_TIMEOUT"),
    ("MEDRAG_OPENAI_MAX_CONCURRENT", "0", "MEDRAG_OPENAI_MAX_CONCURRENT"),
    ("MEDRAG_OPENAI_MAX_CONCURRENT", "two", "MEDRAG_OPENAI_MAX_CONCURRENT must be an integer"),
])
def test_bad_serving_settings_say_which_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str,
                                                 value: str, needle: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=needle):
        load_settings(secrets_path=tmp_path / "none.toml", data_dir=tmp_path)


def test_a_busy_server_gets_at_most_the_limit_and_the_next_request_is_told_why() -> None:
    in_flight, most = [0], [0]
    lock = threading.Lock()

    def slow(request: object) -> Reply:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.6)
        with lock:
            in_flight[0] -= 1
        return _answer()

    with FakeServer({ROUTE: slow}) as server:
        patient = OpenAIChatClient(server.url, "m", timeout=(1.0, 5.0), max_concurrent=2)
        results: list[str] = []
        threads = [threading.Thread(target=lambda: results.append(
            patient.complete([{"role": "user", "content": "hi"}], max_tokens=8, temperature=0))) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.1)
        hurried = OpenAIChatClient(server.url, "m", timeout=(1.0, 0.2), max_concurrent=2)
        with pytest.raises(BackendUnavailableError, match="busy: this app already has 2 request"):
            hurried.complete([{"role": "user", "content": "hi"}], max_tokens=8, temperature=0)
        for thread in threads:
            thread.join(10)
    assert len(results) == 4 and all("effusion" in r for r in results)  # the waiting ones were served in turn
    assert most[0] == 2  # never more than the limit at the server


@pytest.fixture()
def openai_down(demo_workbench) -> Iterator[object]:  # type: ignore[no-untyped-def]
    original = demo_workbench.backends.get("reasoner")
    demo_workbench.backends.use("reasoner", OpenAIReasoner(OpenAIChatClient(dead_url(), "medgemma",
                                                                            timeout=(0.5, 0.5))))
    yield demo_workbench
    demo_workbench.backends.use("reasoner", original)


def test_the_offline_reasoner_takes_over_when_the_server_is_down(openai_down) -> None:  # type: ignore[no-untyped-def]
    workbench = openai_down
    path = Path(workbench.store.cases_frame().iloc[0]["image_path"])
    result = run_analysis(workbench, path, web=False)
    assert not result.failures, result.failures
    assert result.reasoner_backend == "evidence" and "Impression" in result.reasoning
    note = next(n for n in result.notes if "offline evidence reasoner wrote this reading" in n)
    assert "start the server or set MEDRAG_OPENAI_BASE_URL" in note or "127.0.0.1" in note
    saved = workbench.store.get_analysis(result.analysis_id)
    assert saved is not None and note in saved.notes and saved.reasoner_backend == "evidence"


def test_a_stream_cut_after_its_first_token_is_still_a_failed_stage(demo_workbench) -> None:  # type: ignore[no-untyped-def]
    original = demo_workbench.backends.get("reasoner")
    with FakeServer({ROUTE: lambda req: Reply(chunks=_stall(server), chunked=True)}) as server:
        demo_workbench.backends.use("reasoner", OpenAIReasoner(OpenAIChatClient(server.url, "m", timeout=(1.0, 0.3))))
        try:
            path = Path(demo_workbench.store.cases_frame().iloc[0]["image_path"])
            result = run_analysis(demo_workbench, path, web=False, save=False)
        finally:
            demo_workbench.backends.use("reasoner", original)
    assert list(result.failures) == ["reasoning"] and "stopped sending" in result.failures["reasoning"]


def _stall(server: FakeServer) -> Iterator[str]:
    import json

    yield f"data: {json.dumps(chat_chunk('Lungs: '))}\n\n"
    server.sleep(5)
    yield "data: [DONE]\n\n"


def test_settings_defaults_suit_a_workstation() -> None:
    settings = Settings()
    assert settings.openai_timeout == 120.0 and settings.openai_connect_timeout == 5.0
    assert settings.openai_max_concurrent == 4
