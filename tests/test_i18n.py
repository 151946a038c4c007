"""Simplified Chinese: both languages have the same keys, every visible text of the page has one (a new
tab's untranslated labels fail here), translations keep the formatting the English relies on, and the
page swaps each text for the gr.I18n key whose English it is."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from gradio.i18n import I18nData

from demos.page.i18n import LANGUAGES, all_tables, is_citation, request_language, table, visible_texts


@pytest.fixture(scope="module")
def app():
    from app import build_app

    return build_app()


def test_english_and_chinese_have_exactly_the_same_keys_and_no_empty_text():
    for tables in ({language: table(language) for language in LANGUAGES}, all_tables()):
        en, zh = tables["en"], tables["zh"]
        assert sorted(set(en) ^ set(zh)) == [], "a key exists in one language and not the other"
        assert all(text.strip() for text in [*en.values(), *zh.values()])


def test_most_texts_are_really_translated():
    en, zh = table("en"), table("zh")
    same = [key for key in en if en[key] == zh[key]]
    # Names stay: model checkpoints, method names, symbols (GLIGEN, LCM-LoRA, x_t, ...).
    assert len(same) < 0.1 * len(en), same


def test_translations_keep_placeholders_code_and_bold_markers():
    en, zh = table("en"), table("zh")
    for key, english in en.items():
        for marker in ("{}", "`", "**", "\n"):
            assert english.count(marker) == zh[key].count(marker), (key, marker)
        for code in re.findall(r"`([^`]+)`", english):  # code, file names and checkpoints are not translated
            assert f"`{code}`" in zh[key], (key, code)


def test_no_key_can_clash_with_gradios_own_translation_namespaces():
    assert all(key.startswith("pp_") for tables in all_tables().values() for key in tables)


def test_every_visible_text_of_the_page_has_a_translation(app):
    """A tab that adds an English label without adding it to demos/page/translations/*.json fails here."""
    missing = sorted({text for _, _, text in visible_texts(app) if not is_citation(text)})
    assert missing == [], f"add these to demos/page/translations/en.json and zh.json: {missing}"


def test_the_page_shows_keys_whose_english_is_the_original_text(app):
    en = all_tables()["en"]
    swapped = []
    for block in app.blocks.values():
        for attribute in ("label", "info", "placeholder", "value"):
            value = getattr(block, attribute, None)
            if isinstance(value, I18nData):
                swapped.append(value.key)
                assert value.key in en
    assert len(swapped) > 200
    labels = {en[block.label.key] for block in app.blocks.values() if isinstance(getattr(block, "label", None), I18nData)}
    assert {"Seed", "Prompt", "Steps", "CLIP zero-shot", "Lessons"} <= labels


def test_paper_citations_stay_in_their_own_language(app):
    citations = [block.value for block in app.blocks.values() if isinstance(getattr(block, "value", None), str)
                 and is_citation(block.value)]
    assert any("Learning Transferable Visual Models" in text for text in citations)


@pytest.mark.parametrize("cookies, header, language", [
    ({}, "zh-CN,zh;q=0.9", "zh"), ({}, "en-US,en;q=0.9", "en"), ({"pp_lang": "en"}, "zh-CN", "en"),
    ({"pp_lang": "zh"}, "en-US", "zh"), ({"pp_lang": "fr"}, "", "en")])
def test_a_request_is_answered_in_the_switchs_language_else_the_browsers(cookies, header, language):
    assert request_language(SimpleNamespace(cookies=cookies, headers={"accept-language": header})) == language
