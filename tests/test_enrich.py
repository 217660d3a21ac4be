"""`rag enrich` with a fake chat model: valid replies become entries, bad ones are
reported and never written, and the file caches by clause hash."""

from __future__ import annotations

import json

from langchain_core.language_models.fake_chat_models import FakeListChatModel

from rag.corpus import hooks
from rag.corpus.enrich import enrich, parse_reply
from rag.models import Chunk

GOOD = json.dumps({"gist_en": "Zones may set up a one-stop service for investors.",
                   "questions_en": ["Is there one-stop service?", "Who helps investors?", "Where do I apply?"],
                   "questions_zh": ["有一站式服务吗？", "谁帮投资者办事？", "去哪里申请？"]}, ensure_ascii=False)


def _clause(n: int, text: str) -> Chunk:
    return Chunk(chunk_id=f"c{n}", doc_id="本地条例@2020-01-01", doc_title="本地条例", short_title="本地条例",
                 doc_type="地方性法规", issuer="", date="2020-01-01", status="现行有效", label=f"《本地条例》第{n}条",
                 clause_key=f"第{n}条", kind="article", section_path="", text=text, start=0, end=len(text),
                 token_count=5, ordinal=n)


def test_parse_reply_takes_label_and_hash_from_the_clause_not_the_model():
    c = _clause(1, "第一条 开发区设立一站式服务中心。")
    e = parse_reply("Sure! ```json\n" + GOOD + "\n```", c)
    assert e.label == c.label and e.clause_hash == hooks.clause_hash(c.text)
    for bad, why in (("no json here", "no JSON"), ('{"gist_en": "x"}', "must be"), ("[1, 2]", "no JSON")):
        try:
            parse_reply(bad, c)
        except ValueError as exc:
            assert why in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")


def test_enrich_writes_valid_entries_skips_bad_replies_and_caches(tmp_path):
    clauses = [_clause(1, "第一条 开发区设立一站式服务中心。"), _clause(2, "第二条 本条例自公布之日起施行。")]
    model = FakeListChatModel(responses=[GOOD, "I cannot help with that."])
    summary = enrich(model, {"本地条例@2020-01-01": clauses}, tmp_path, progress=False)
    assert (summary.written, summary.cached, len(summary.failed)) == (1, 0, 1)
    assert "《本地条例》第2条" in summary.failed[0]
    entries, problems = hooks.read_entries([tmp_path])
    assert not problems and [e.label for e in entries] == ["《本地条例》第1条"]
    # Second run: the first clause is current (cached); only the second is asked again.
    again = enrich(FakeListChatModel(responses=[GOOD]), {"本地条例@2020-01-01": clauses}, tmp_path, progress=False)
    assert (again.written, again.cached, len(again.failed)) == (1, 1, 0)
    assert len(hooks.read_entries([tmp_path])[0]) == 2
