import re

from rag.corpus.corruption import detect_corruption
from rag.corpus.normalize import (
    detect_language,
    fold_for_match,
    normalize_query,
    normalize_text,
    strip_pinyin_annotations,
    widen_punctuation,
)
from rag.corpus.notice import NOTICE_METADATA, build_canonical_notice
from rag.settings import REPO_ROOT

PINYIN = re.compile(r"[（(][a-zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜü]+[)）]")


def test_pinyin_annotation_removed_but_real_parentheses_kept():
    assert strip_pinyin_annotations("發(fā)展區(qū)") == "發展區"
    assert strip_pinyin_annotations("用地(M0)和(5G)及(一)與边(跨)境") == "用地(M0)和(5G)及(一)與边(跨)境"
    assert strip_pinyin_annotations("第(a)项") == "第(a)项"  # no tone mark: not pinyin


def test_punctuation_widened_in_chinese_only():
    assert widen_punctuation("中央编办,各省:") == "中央编办，各省："
    assert widen_punctuation("工业用地(三类工业用地除外)") == "工业用地（三类工业用地除外）"
    assert widen_punctuation("Article 21 (foreign), 1,000 and 8:30") == "Article 21 (foreign), 1,000 and 8:30"


def test_normalize_text_full_pipeline():
    assert normalize_text("國家級經(jīng)開區(qū)  ,Ｍ０用地") == "国家级经开区，M0用地"
    # DB artefact: a stray space inside a sentence goes, the article number's space stays.
    assert normalize_text("第五百零一条 县级以上 有关部门") == "第五百零一条 县级以上有关部门"


def test_seed_normalised_has_no_annotation_and_keeps_real_parentheses(seed_text):
    text = normalize_text(seed_text)
    assert not PINYIN.search(text.replace("（yè）", "")), "only the mojibake span may keep debris"
    for kept in ["（M0）", "（5G）", "（一）", "（十六）", "边（跨）境", "（三类工业用地除外）", "（以下简称国家级经开区）"]:
        assert kept in text
    assert "發" not in text and "经开区" in text


def test_detector_finds_exactly_the_two_mojibake_spans(seed_text):
    found = detect_corruption(seed_text, "seed.txt")
    assert len(found) == 2
    first, second = found
    assert first.text.startswith("?qū)I") and "(二)" in seed_text.splitlines()[first.line - 1]
    assert "ν夂献鳌" in second.text and "(九)" in seed_text.splitlines()[second.line - 1]
    line = seed_text.splitlines()[first.line - 1]
    assert line[first.column - 1 :].startswith(first.text)
    assert str(first).startswith(f"seed.txt:{first.line}:{first.column}:")


def test_detector_quiet_on_clean_text_and_science_symbols():
    assert detect_corruption("α放射性固体废物依照前款规定处置。") == []
    assert detect_corruption("新型产业用地（M0）不得用于开发住宅。") == []
    assert len(detect_corruption("支持国家级经开区发展服务型制造，向?专业化延伸。")) == 1
    assert len(detect_corruption("等领域对外合作。支持国家级\ufffd经开区加强合作")) == 1


def test_canonical_notice_is_the_repaired_seed(seed_text):
    committed = (REPO_ROOT / "corpus" / "documents" / "notice-2025-05-21.md").read_text(encoding="utf-8")
    body = committed.split("---\n", 2)[2]
    assert body == build_canonical_notice(seed_text)
    assert "向专业化" in body and "对外合作。支持国家级经开区" in body
    assert "?" not in body and detect_corruption(body) == []
    for key, value in NOTICE_METADATA.items():
        assert f"{key}: {value}" in committed


def test_fold_for_match_ignores_script_width_and_punctuation():
    assert fold_for_match("國家級 經開區，15％。") == fold_for_match("国家级经开区15%")
    assert fold_for_match("Ｍ０") == "m0"


def test_detect_language():
    assert detect_language("M0用地能建住宅吗？") == "zh"
    assert detect_language("Does the plan support cross-border e-commerce?") == "en"
    assert detect_language("What does 新型产业用地 mean for investors here?") == "mixed"
    assert normalize_query("經開區\n是什麼") == "经开区 是什么"
