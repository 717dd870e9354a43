"""Tools, structured output and log-probabilities on a real GGUF model through llama.cpp, with the
real ``openai`` client and with langchain-openai over loopback HTTP (issue 15).

Qwen2.5-Coder-0.5B renders tools with its own chat template; SmolLM2's template has no tools, so
the gateway refuses them there by name.
"""

from __future__ import annotations

import json

import openai
import pydantic
import pytest

from fleet.config import parse_fleet
from gateway.app import create_app
from tests.conftest import LiveServer

pytestmark = pytest.mark.slow
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]


@pytest.fixture(scope="module")
def server():
    models = [
        {"name": "qwen", "backend": "llama_cpp", "gguf": "packaged:qwen2.5-coder-0.5b-instruct-q4_k_m",
         "context_length": 2048},
        {"name": "smol", "backend": "llama_cpp", "gguf": "packaged:smollm2-135m-instruct-q4_1",
         "context_length": 1024},
    ]
    with LiveServer(create_app(parse_fleet({"models": models}))) as live:
        yield live


@pytest.fixture
def client(server, openai_client):
    return openai_client(server.url)


def _city(call) -> str:
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    return json.loads(call.function.arguments)["city"]


@pytest.mark.parametrize(
    "tool_choice", ["auto", "required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_a_tool_call_comes_back_as_tool_calls(client, tool_choice):
    answer = client.chat.completions.create(
        model="qwen", messages=ASK, tools=[WEATHER], tool_choice=tool_choice, temperature=0, max_tokens=64
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message.content
    assert [_city(call) for call in choice.message.tool_calls] == ["Paris"]
    assert not choice.message.content


def test_tool_choice_none_answers_in_text(client):
    answer = client.chat.completions.create(
        model="qwen", messages=ASK, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=24
    )
    assert answer.choices[0].message.tool_calls is None and answer.choices[0].message.content


def test_a_streamed_tool_call_arrives_as_deltas(client):
    stream = client.chat.completions.create(
        model="qwen", messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=64,
        stream=True,
    )
    arguments, names, finish, content = "", [], None, ""
    for chunk in stream:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for call in choice.delta.tool_calls or ():
                names += [call.function.name] if call.function.name else []
                arguments += call.function.arguments or ""
            finish = choice.finish_reason or finish
    assert (names, finish, content) == (["get_weather"], "tool_calls", "")
    assert json.loads(arguments)["city"] == "Paris"


def test_the_tools_answer_is_read_on_the_next_turn(client):
    first = client.chat.completions.create(
        model="qwen", messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=64
    )
    call = first.choices[0].message.tool_calls[0]
    turn = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "It is 31 degrees Celsius and sunny."},
    ]
    second = client.chat.completions.create(model="qwen", messages=turn, tools=[WEATHER], temperature=0,
                                            max_tokens=48, tool_choice="none")
    assert "31" in (second.choices[0].message.content or "")  # only the tool's answer says 31


def test_a_model_whose_template_has_no_tools_refuses_them_by_name(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="smol", messages=ASK, tools=[WEATHER], max_tokens=8)
    assert caught.value.body["param"] == "tools" and "qwen" in caught.value.body["message"]


class Sky(pydantic.BaseModel):
    colour: str
    shade: int


def test_parse_returns_a_pydantic_object_under_the_schemas_grammar(client):
    for model in ("qwen", "smol"):
        answer = client.chat.completions.parse(
            model=model,
            messages=[{"role": "user", "content": "What colour is the sky, and how dark from 1 to 10?"}],
            response_format=Sky,
            temperature=0,
            max_tokens=48,
        )
        parsed = answer.choices[0].message.parsed
        assert isinstance(parsed, Sky), answer.choices[0].message.content


def test_json_schema_enums_and_json_object_are_enforced_streaming_or_not(client):
    schema = {"type": "object", "properties": {"colour": {"enum": ["red", "blue"]}}, "required": ["colour"],
              "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "c", "schema": schema, "strict": True}}
    ask = [{"role": "user", "content": "Name a colour of a rainbow."}]
    whole = client.chat.completions.create(model="smol", messages=ask, response_format=fmt, temperature=0,
                                           max_tokens=32)
    assert json.loads(whole.choices[0].message.content)["colour"] in ("red", "blue")
    stream = client.chat.completions.create(model="smol", messages=ask, response_format={"type": "json_object"},
                                            temperature=0.7, seed=3, max_tokens=48, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert isinstance(json.loads(text), dict)


def test_logprobs_in_openais_shape_whole_streamed_and_legacy(client):
    whole = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Hi"}],
                                           logprobs=True, top_logprobs=2, temperature=0, max_tokens=6)
    tokens = whole.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == whole.choices[0].message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in tokens)
    assert all(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob for t in tokens)
    assert tokens[0].logprob == pytest.approx(tokens[0].top_logprobs[0].logprob)  # greedy: the likeliest
    stream = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Hi"}],
                                            logprobs=True, temperature=0, max_tokens=6, stream=True)
    streamed = [t for c in stream if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in tokens]
    legacy = client.completions.create(model="smol", prompt="1, 2, 3,", logprobs=2, temperature=0, max_tokens=4)
    lp = legacy.choices[0].logprobs
    assert "".join(lp.tokens) == legacy.choices[0].text and len(lp.top_logprobs[0]) == 2


def test_penalties_and_logit_bias_change_the_answer(client, smollm2_gguf):
    from llama_cpp import Llama

    def answer(**fields) -> str:
        reply = client.completions.create(
            model="smol", prompt="The capital of France is", temperature=0, max_tokens=3, **fields
        )
        return reply.choices[0].text

    greedy = client.completions.create(
        model="smol", prompt="The capital of France is", temperature=0, max_tokens=1, logprobs=1
    ).choices[0].logprobs.tokens[0]
    vocab = Llama(smollm2_gguf, vocab_only=True, verbose=False)
    token_id = vocab.tokenize(greedy.encode(), add_bos=False, special=False)
    assert len(token_id) == 1 and answer().startswith(greedy)
    assert not answer(logit_bias={str(token_id[0]): -100}).startswith(greedy)  # banned: another wins

    def repeat(**fields) -> str:
        prompt = "apple apple apple apple apple apple apple apple"
        answer = client.completions.create(model="smol", prompt=prompt, temperature=0, max_tokens=12, **fields)
        return answer.choices[0].text

    assert repeat(frequency_penalty=2.0) != repeat()
    assert repeat(presence_penalty=2.0) != repeat()


def test_langchain_openai_completes_a_tool_turn_and_a_structured_output_call(server):
    import langchain_openai
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return f"31 degrees Celsius and sunny in {city}"

    llm = langchain_openai.ChatOpenAI(
        model="qwen", base_url=server.url + "/v1", api_key="unused", temperature=0, max_tokens=64, max_retries=0
    )
    asked = llm.bind_tools([get_weather], tool_choice="required").invoke("What is the weather in Paris?")
    assert [call["name"] for call in asked.tool_calls] == ["get_weather"]
    assert asked.tool_calls[0]["args"] == {"city": "Paris"}
    result = get_weather.invoke(asked.tool_calls[0])  # a ToolMessage answering the call
    final = llm.invoke([("user", "What is the weather in Paris?"), asked, result])
    assert "31" in final.content

    sky = llm.with_structured_output(Sky, method="json_schema").invoke("What colour is the sky, and how dark?")
    assert isinstance(sky, Sky)


def test_the_responses_api_answers_calls_tools_and_streams(client):
    tool = {"type": "function", **WEATHER["function"]}
    called = client.responses.create(model="qwen", input=ASK[0]["content"], tools=[tool], tool_choice="required",
                                     temperature=0, max_output_tokens=64)
    [call] = [item for item in called.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments)["city"] == "Paris"
    answered = client.responses.create(
        model="qwen",
        input=[
            {"role": "user", "content": ASK[0]["content"]},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "31 degrees Celsius, sunny"},
        ],
        tools=[tool], tool_choice="none", temperature=0, max_output_tokens=48,
    )
    assert "31" in answered.output_text
    with client.responses.stream(model="smol", input="Say hello.", instructions="Answer in one short sentence.",
                                 temperature=0, max_output_tokens=64) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas and "".join(deltas) == final.output_text
    parsed = client.responses.parse(model="smol", input="What colour is the sky, and how dark from 1 to 10?",
                                    text_format=Sky, temperature=0, max_output_tokens=48)
    assert isinstance(parsed.output_parsed, Sky)
