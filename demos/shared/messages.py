"""What a handler tells its reader — errors, warnings, summaries — in the language of the reader's page.

The code writes its messages in English, as ordinary f-strings, where they are raised or composed; this
module translates a finished message by matching it against the templates of `messages.zh.json`
(English template → Chinese, `{}` for each value of the f-string). A value that is itself a message (a
warning inside a summary) is translated too, and so is a value that names an input ("The number of
steps", from `inputs.zh.json`: only inside a message, never a whole output). A text that matches no
template is left as it is: a user's own words, a checkpoint name. `scripts/message_templates.py` reads
every template out of the source, and `tests/test_i18n.py` fails for one without a translation.

The language is the page's (the language switch's cookie, else the browser's), read from the request
that gradio is answering; an API client without either gets English.
"""
from __future__ import annotations

import functools
import json
import re
import string
from pathlib import Path
from typing import Any

LANGUAGES = ("en", "zh")
CATALOGUES = Path(__file__).resolve().parent  # messages.<language>.json, inputs.<language>.json beside this file
MIN_LETTERS = 4  # a template with fewer letters of its own ("**{}**", "{} s") would match anything


def request_language(request: Any) -> str:
    """The language a request's page shows: the language switch's cookie, else the browser's."""
    if request is None:
        return "en"
    cookie = ((getattr(request, "cookies", None) or {}).get("pp_lang") or "").split("-")[0]  # zh-CN -> zh
    if cookie in LANGUAGES:
        return cookie
    accepted = (getattr(request, "headers", None) or {}).get("accept-language", "")
    return "zh" if accepted.lower().startswith("zh") else "en"


def reader_language() -> str:
    """The language of the page whose event is being handled now ("en" outside an event)."""
    from gradio.context import LocalContext

    return request_language(LocalContext.request.get(None))


def template_parts(template: str) -> list[tuple[str, bool]]:
    """A template as (literal text, followed by a value?) pieces, braces `{{ }}` unescaped."""
    return [(literal, field is not None) for literal, field, _, _ in string.Formatter().parse(template)]


def template_letters(template: str) -> int:
    return sum(character.isalpha() for literal, _ in template_parts(template) for character in literal)


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("".join(re.escape(literal) + ("(.*?)" if value else "")
                              for literal, value in template_parts(template)), re.DOTALL)


def templates(kind: str, language: str) -> dict[str, str]:
    """English template → translation, of `kind` "messages" or "inputs" (empty for English)."""
    path = CATALOGUES / f"{kind}.{language}.json"
    return json.loads(path.read_text()) if path.exists() else {}


@functools.cache
def catalogue(kind: str, language: str) -> list[tuple[re.Pattern[str], str]]:
    """(pattern of the English template, translated template), the most specific template first."""
    table = templates(kind, language)
    usable = sorted((english for english in table if template_letters(english) >= MIN_LETTERS),
                    key=template_letters, reverse=True)
    return [(_pattern(english), table[english]) for english in usable]


def translate(text: str, language: str) -> str:
    """`text` in `language`: as a whole message if a template matches it, else paragraph by paragraph."""
    if language == "en" or not text.strip():
        return text
    whole = _translate_message(text, language, ("messages",))
    if whole is not None:
        return whole
    return "\n\n".join(_translate_message(part, language, ("messages",)) or part for part in text.split("\n\n"))


def _translate_message(text: str, language: str, kinds: tuple[str, ...]) -> str | None:
    for kind in kinds:
        for pattern, translated in catalogue(kind, language):
            match = pattern.fullmatch(text)
            if match:
                values = [_translate_message(value, language, ("messages", "inputs")) or value
                          for value in match.groups()]
                return translated.format(*values)
    return None


def in_reader_language(value: Any) -> Any:
    """A handler's output with every text in it translated for the reader (tuples and lists looked into);
    images, numbers, tables and gradio updates pass through (the page shows table headers translated)."""
    language = reader_language()
    return value if language == "en" else _translated_value(value, language)


def _translated_value(value: Any, language: str) -> Any:
    if isinstance(value, str):
        return translate(value, language)
    if isinstance(value, (tuple, list)):
        return type(value)(_translated_value(item, language) for item in value)
    return value
