"""The request bodies of the OpenAI-compatible API, as pydantic models (vLLM keeps its in ``protocol.py`` too).

Bodies are validated strictly: a boolean is not an integer (``"max_tokens": true``), a string is not a
boolean (``"stream": "yes"``) or a number (``"temperature": "0.5"``); an integer is still a float. Unknown
fields are ignored, as OpenAI's API does. Fields the server takes but cannot honour (``n`` other than 1,
log probabilities, ``echo``) are parsed here and refused with a 400 by the routes, naming the field.
Responses are plain dicts in OpenAI's shape, built by the routes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

_STRICT = ConfigDict(extra="ignore", strict=True)
SEED_RANGE = (-(2**63), 2**64 - 1)
"""The seeds ``torch.Generator.manual_seed`` takes (a negative one stands for itself plus 2**64)."""
_Number = Annotated[float, Field(allow_inf_nan=False)]


class _Part(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = _STRICT
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_Part]

    def as_dict(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class _StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: bool = False


class _Common(BaseModel):
    """Fields both endpoints take."""

    model_config = _STRICT
    model: str | None = None
    temperature: _Number | None = Field(None, ge=0, le=2)
    top_p: _Number | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    n: int = 1
    stream: bool = False
    stream_options: _StreamOptions | None = None


class ChatBody(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None  # only false: log probabilities are not computed
    top_logprobs: int | None = Field(None, ge=0, le=20)


class CompletionBody(_Common):
    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0, le=5)  # only null: log probabilities are not computed
    echo: bool = False  # only false


SCHEMAS = (_Part, ChatMessage, _StreamOptions, ChatBody, CompletionBody)
"""Every model of a body, outer and inner (an error's field path is told in their field names)."""
