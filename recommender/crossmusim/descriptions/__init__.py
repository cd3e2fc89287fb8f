"""Description sourcing and mining (pure Python, no Django).

Sources turn a ``TrackInfo`` into ``SourcedDescription`` candidates: ``web`` (polite
fetching + trafilatura), ``document`` (text that ships with the score), ``llm``
(OpenAI-compatible Chat Completions) and ``metadata`` (offline templates, never called an
LLM). ``mining.mine_track`` judges a track's candidates and keeps the best few.
"""

from .documents import DocumentSource, parse_document
from .llm import ChatCompletionsClient, LLMConfig, LLMError, LLMSource
from .mining import Candidate, MiningConfig, Reason, Verdict, mine_many, mine_track
from .templates import MetadataTemplateSource, write_template_descriptions
from .types import (
    DescriptionSource,
    Perspective,
    SourcedDescription,
    SourceName,
    SourceResult,
    TrackInfo,
    text_hash,
)
from .web import FetchError, WebConfig, WebFetcher, WebSource

__all__ = [
    "Candidate", "ChatCompletionsClient", "DescriptionSource", "DocumentSource", "FetchError", "LLMConfig",
    "LLMError", "LLMSource", "MetadataTemplateSource", "MiningConfig", "Perspective", "Reason", "SourceName",
    "SourceResult", "SourcedDescription", "TrackInfo", "Verdict", "WebConfig", "WebFetcher", "WebSource",
    "mine_many", "mine_track", "parse_document", "text_hash", "write_template_descriptions",
]
