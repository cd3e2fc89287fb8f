"""The document source (score fields, free-text columns) and the offline metadata template writer."""

from __future__ import annotations

from recommender.crossmusim.descriptions import (
    DocumentSource,
    MetadataTemplateSource,
    TrackInfo,
    parse_document,
    write_template_descriptions,
)

ABC = """X:1
T:The Kesh
R:jig
O:Ireland
M:6/8
K:G
N:A very popular session jig, often played as the first tune in a set.
H:Collected by Francis O'Neill in Chicago
+:from a piper from County Clare.
W:Oh the morning dew falls
W:on the green hill
|:GAG GAB|ABA ABd|"""

# The demo catalog writes fields as "Name: value" lines, Humdrum codes without the !!!.
DEMO_ABC = """Title: The Kesh
Composer: traditional
Collection: O'Neill's Music of Ireland
T: The Kesh
R: jig
B: O'Neill's Music of Ireland
O: Ireland
N: Often played as the first tune of a set of jigs."""

KERN = """!!!COM: Bach, Johann Sebastian
!!!OTL@@DE: Wer nur den lieben Gott laesst walten
!!!AGN: chorale
!!!AMT: simple quadruple
!!!ONB: A four-part chorale harmonisation, sung by the congregation in a plain, syllabic style.
!! The alto line was corrected from the 1831 edition by the editor.
**kern\t**kern
4c\t4e
*-\t*-"""

LABELS = {"style": "double_jig", "tune_type": "jig", "meter": "6/8", "key": "G", "mode": "major", "tempo_bpm": 118,
          "instruments": ["fiddle", "piano"], "region": "Ireland", "collection": "O'Neill's Music of Ireland",
          "composer": "traditional"}


def test_abc_fields_become_prose_facts_and_words():
    parsed = {field.split(":")[0]: (perspective, text) for field, perspective, text in parse_document(ABC)}
    assert parsed["N"][1] == "A very popular session jig, often played as the first tune in a set."
    assert parsed["H"] == ("context", "Collected by Francis O'Neill in Chicago from a piper from County Clare.")
    assert parsed["facts"][1] == "Tune type: jig. Origin: Ireland. Meter: 6/8. Key: G."
    assert parsed["words"] == ("lyrics", "Oh the morning dew falls\non the green hill")
    assert not any("GAG" in text for _p, text in parsed.values())


def test_demo_catalog_document_lines_and_humdrum_records():
    demo = {field.split(":")[0]: text for field, _p, text in parse_document(DEMO_ABC)}
    assert demo["N"] == "Often played as the first tune of a set of jigs."
    assert "Tune type: jig." in demo["facts"] and "Origin: Ireland." in demo["facts"]
    kern = {field.split(":")[0]: text for field, _p, text in parse_document(KERN)}
    assert kern["ONB"].startswith("A four-part chorale harmonisation")
    assert kern["comment"].startswith("The alto line was corrected")
    assert kern["facts"] == "Genre: chorale. Meter: simple quadruple. Composer: Bach, Johann Sebastian."
    # Title and composer alone say nothing about the sound: no description.
    assert parse_document("Title: Chorale 12\nComposer: J. S. Bach") == []


def test_plain_prose_and_free_text_columns():
    prose = ("This piece has three parts: a slow air, a jig and a reel.\n\n"
             "It was written for the uilleann pipes and is often played with drones sounding throughout.")
    assert [text for _f, _p, text in parse_document(prose)] == [" ".join(prose.split())]
    track = TrackInfo(3, "Scarborough Fair", metadata={
        "notes": "An English folk ballad in the Dorian mode, sung slowly over a plucked guitar.",
        "source": "music21 corpus: trecento/PMFC_24_8-Gloria Ciconia 8 and a few more words.xml",
        "url": "https://example.org/a-very-long-url-that-is-not-prose"})
    source = DocumentSource()
    assert source.units(track) == ["document"]
    result = source.fetch(track, "document")
    assert [(d.origin, d.source) for d in result.descriptions] == [("metadata.notes#0", "document")]
    assert source.units(TrackInfo(4, "Nothing")) == []


def test_templates_cover_five_perspectives_and_are_labelled_as_templates():
    track = TrackInfo(1, "The Kesh", labels=LABELS)
    descriptions = write_template_descriptions(track)
    assert [d.perspective for d in descriptions] == ["style", "mood", "instrumentation", "rhythm", "context"]
    assert all(d.source == "metadata" and d.details["template"] is True for d in descriptions)
    text = " ".join(d.text for d in descriptions)
    for fact in ("double jig", "6/8", "G major", "fiddle and piano", "118 beats per minute", "Ireland"):
        assert fact in text
    assert "of traditional origin" in text and "by traditional" not in text
    result = MetadataTemplateSource().fetch(track, "templates:v1")
    assert result.ok and len(result.descriptions) == 5


def test_template_phrasing_varies_between_tracks_and_is_stable():
    texts = {tuple(d.text for d in write_template_descriptions(TrackInfo(i, f"Tune {i}", labels=LABELS)))
             for i in range(12)}
    assert len(texts) >= 4
    again = [d.text for d in write_template_descriptions(TrackInfo(3, "Tune 3", labels=LABELS))]
    assert again == [d.text for d in write_template_descriptions(TrackInfo(3, "Tune 3", labels=LABELS))]


def test_minor_slow_moods_and_thin_labels():
    chorale = TrackInfo(2, "Chorale", "Johann Sebastian Bach", labels={
        "style": "bach_chorale", "mode": "minor", "key": "A", "tempo_bpm": 60, "instruments": ["choir"]})
    mood = next(d.text for d in write_template_descriptions(chorale) if d.perspective == "mood")
    assert any(word in mood for word in ("melancholic", "sombre", "plaintive", "wistful"))
    assert "Bach chorale" in " ".join(d.text for d in write_template_descriptions(chorale))
    bare = write_template_descriptions(TrackInfo(9, "Untitled"))
    assert len(bare) == 1 and bare[0].text == "A piece of music titled Untitled."
