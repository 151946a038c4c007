"""Simplified Chinese: both languages have the same keys, every visible text of the page has one (a new
tab's untranslated labels fail here), translations keep the formatting the English relies on, and the
page swaps each text for the gr.I18n key whose English it is."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from gradio.i18n import I18nData

from demos.page.i18n import LANGUAGES, all_tables, is_citation, table, visible_texts
from demos.shared.messages import request_language


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
    english = set(all_tables()["en"].values())  # texts the page could not swap for a key (headers) are looked up
    missing = sorted({text for _, _, text in visible_texts(app) if not is_citation(text) and text not in english})
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


# ---- messages: errors, warnings and summaries in the reader's language ----------------------------

def test_every_message_of_the_source_has_a_chinese_template_and_none_is_stale():
    """A new `UserError(...)`, summary or input name without a translation fails here (the list to fill
    in: `python scripts/message_templates.py`)."""
    from demos.shared.messages import templates
    from scripts.message_templates import message_templates

    for kind, found in message_templates().items():
        known = templates(kind, "zh")
        assert sorted(set(found) - set(known)) == [], f"translate these {kind} in demos/shared/{kind}.zh.json"
        assert sorted(set(known) - set(found)) == [], f"no longer written anywhere: remove from {kind}.zh.json"
    assert len(message_templates()["messages"]) > 150


def test_chinese_templates_keep_the_values_code_and_markup_of_the_english():
    import string

    from demos.shared.messages import templates

    for kind in ("messages", "inputs"):
        for english, chinese in templates(kind, "zh").items():
            fields = [field for _, field, _, _ in string.Formatter().parse(chinese) if field is not None]
            assert len(fields) == english.count("{}") - english.count("{{}}"), (english, chinese)
            assert all(field == "" for field in fields) or sorted(fields) == [str(i) for i in range(len(fields))]
            for marker in ("**", "\n"):
                assert english.count(marker) == chinese.count(marker), (english, marker)
            for code in re.findall(r"`([^`]+)`", english):
                assert f"`{code}`" in chinese, (english, code)
            assert re.search(r"[\u4e00-\u9fff]", chinese) or not re.search(r"[a-z]{3,} [a-z]{3,}", english), english


def test_a_message_is_translated_with_its_values_and_the_inputs_it_names():
    from demos.shared.messages import translate

    error = "The number of steps must be between 1 and 50 (got 80)."
    chinese = translate(error, "zh")
    assert "must" not in chinese and "number of steps" not in chinese and "步数" in chinese
    assert [n for n in re.findall(r"\d+", chinese)] == ["1", "50", "80"]
    assert translate(error, "en") == error


def test_a_summary_made_of_nested_messages_is_translated_inside_out():
    from demos.shared.messages import translate

    summary = ("**seed 7** · 3.2 s · 20 DDIM steps at 512×512 · text CFG 1: diffusers runs the image + text "
               "branch alone (batch of 1), so the image scale is unused")
    chinese = translate(summary, "zh")
    assert chinese.startswith("**") and "7" in chinese and "512×512" in chinese and "DDIM" in chinese
    assert "runs the image" not in chinese and "steps at" not in chinese
    paragraphs = translate("**clip-vit-base-patch32** · 12 ms (after loading)\n\n⚠️ a user's own words", "zh")
    assert "after loading" not in paragraphs and paragraphs.endswith("\n\n⚠️ a user's own words")


def test_a_text_that_is_no_message_passes_through():
    from demos.shared.messages import translate

    for text in ("a photo of an astronaut riding a horse", "clip-vit-base-patch32", "image", "", "Steps"):
        assert translate(text, "zh") == text  # input names are translated only inside a message
