"""The web app: Gradio UI (chat, retrieval test, corpus, benchmark, upload) and the
JSON API, served together by one uvicorn on 127.0.0.1.

    from ui.app import serve
    serve(assistant)                      # http://127.0.0.1:7860
    serve(assistant, allow_upload=True)   # with the upload tab

`python -m ui.app [--port N] [--upload]` serves the UI on the in-memory demo
assistant (ui/demo.py), for working on the UI without an index.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import gradio as gr
from fastapi import FastAPI

from rag.errors import ConfigError
from rag.settings import REPO_ROOT, Settings

from . import chat, render, tabs
from .api import add_api_routes, token_matches
from .labels import label, relabel_updates
from .openai_api import add_openai_routes
from .service import AssistantService

log = logging.getLogger(__name__)

DEV_SPLIT = REPO_ROOT / "eval" / "dev.jsonl"
TITLE = "经开区政策问答 · ETDZ Policy Q&A"

# Offline machines: the bundled Source Sans Pro for Latin text, then the CJK
# fonts the system has (Noto CJK on Linux, PingFang on macOS, YaHei on Windows).
THEME = gr.themes.Default(
    primary_hue="blue",
    font=[gr.themes.LocalFont("Source Sans Pro", weights=(400, 600)), "Noto Sans CJK SC", "Noto Sans SC",
          "PingFang SC", "Microsoft YaHei", "system-ui", "sans-serif"],
)

CSS = """
.gradio-container { max-width: 1400px !important; }
/* Let the header wrap on phones instead of squeezing the title into a column. */
#title-block { min-width: min(320px, 100%) !important; }
#app-title h1 { font-size: 1.4rem; margin: 0; }
#app-title p { margin: 2px 0 0; color: var(--body-text-color-subdued); font-size: 0.9rem; }
.muted { color: var(--body-text-color-subdued); }
.transcript { display: flex; flex-direction: column; gap: 10px; padding: 4px; }
.transcript .msg { border-radius: 10px; padding: 10px 12px; border: 1px solid var(--border-color-primary);
  line-height: 1.7; overflow-wrap: anywhere; }
.transcript .msg.user { background: var(--color-accent-soft); align-self: flex-end; max-width: 92%; }
.transcript .msg.bot { background: var(--block-background-fill); }
.transcript .who { display: block; font-size: 0.75rem; font-weight: 600; color: var(--body-text-color-subdued); }
.transcript .text { white-space: pre-wrap; }
.msg.abstained { border-left: 5px solid #d97706; background: rgba(251, 191, 36, 0.12) !important; }
.abstain-title { font-weight: 600; color: #b45309; margin-bottom: 4px; }
.msg.error, .error-box { border-left: 5px solid #dc2626; background: rgba(248, 113, 113, 0.12) !important;
  padding: 8px 12px; border-radius: 8px; }
.ok-box { border-left: 5px solid #16a34a; background: rgba(74, 222, 128, 0.12); padding: 8px 12px; border-radius: 8px; }
.warnings { border: 1px solid #f59e0b; background: rgba(251, 191, 36, 0.15); border-radius: 8px;
  padding: 6px 10px; margin: 4px 0 8px; }
.warnings ul, .related ul, .sources ul { margin: 2px 0 0 1.2em; padding: 0; }
.related { margin-top: 8px; }
.sources { margin-top: 8px; font-size: 0.85rem; color: var(--body-text-color-subdued); }
a.cite-ref { font-weight: 600; text-decoration: none; color: var(--color-accent); cursor: pointer; padding: 0 1px; }
a.cite-ref:hover { text-decoration: underline; }
.cite-panel { display: flex; flex-direction: column; gap: 10px; }
#cite-panel { max-height: 78vh; overflow-y: auto; }
.cite-cards { display: flex; flex-direction: column; gap: 10px; }
.cite-card, .hit { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px 12px;
  background: var(--block-background-fill); overflow-wrap: anywhere; }
.cite-card.focus { outline: 3px solid var(--color-accent); outline-offset: -1px; }
.cite-card.not-in-force { border-left: 5px solid #dc2626; }
.related-card { border-style: dashed; opacity: 0.92; }
.see-also, .coming-version { margin-top: 6px; font-size: 0.92em; }
.see-also-head, .coming-head { font-weight: 600; margin-right: 6px; }
.coming-version { border-left: 4px solid #d97706; padding-left: 6px; }
details.linked-clause { margin: 2px 0; }
details.linked-clause summary { cursor: pointer; color: var(--color-accent); text-decoration: underline; }
.ribbon { font-size: 0.72rem; border: 1px solid #d97706; color: #b45309; border-radius: 4px; padding: 0 4px; }
.related-head { margin: 6px 0 0; color: #b45309; }
.card-head { font-weight: 600; }
.card-head .n { color: var(--color-accent); }
.doc-title { font-size: 0.88rem; margin: 2px 0; }
.en-title { font-style: italic; color: var(--body-text-color-subdued); }
.meta { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; font-size: 0.8rem; margin: 4px 0; }
.section { font-size: 0.8rem; color: var(--body-text-color-subdued); }
.clause-text { white-space: pre-wrap; line-height: 1.75; margin-top: 6px; }
.gist { margin-top: 8px; padding: 6px 8px; border-left: 3px solid #b0b7c3; background: var(--background-fill-secondary); }
.gist-label { font-size: 0.8em; color: var(--body-text-color-subdued); }
.gist-text { font-style: italic; }
.badge { display: inline-block; border-radius: 999px; padding: 1px 8px; font-size: 0.75rem; font-weight: 600; }
.badge-ok { background: #dcfce7; color: #166534; }
.badge-bad { background: #fee2e2; color: #991b1b; }
.badge-pending { background: #fef3c7; color: #92400e; }
mark { background: #fde68a; color: #111827; border-radius: 2px; padding: 0 1px; }
mark.term { background: #bfdbfe; }
.scores { display: flex; flex-wrap: wrap; gap: 6px; margin: 4px 0; font-size: 0.8rem; }
.score { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 0 6px; font-variant-numeric: tabular-nums; }
.score.fused { border-color: var(--color-accent); }
.terms { font-size: 0.8rem; }
.hits { display: flex; flex-direction: column; gap: 10px; }
.clause-tree details.section-group > summary { font-weight: 600; cursor: pointer; padding: 4px 0; }
.clause-tree details.clause { margin: 4px 0 4px 1em; border-left: 2px solid var(--border-color-primary); padding-left: 8px; }
.clause-tree details.clause > summary { cursor: pointer; }
.clause-tree .preview { font-size: 0.85rem; }
.examples { align-items: center; flex-wrap: wrap; gap: 6px !important; }
.persona { font-size: 0.8rem; font-weight: 600; margin-top: 4px; color: var(--body-text-color-subdued); }
.examples button.example { flex: 0 1 auto !important; min-width: 0 !important; }
"""


def build_blocks(assistant: AssistantService, allow_upload: bool = False, allow_benchmark: bool = False,
                 feedback_max: int = 10_000) -> gr.Blocks:
    with gr.Blocks(title=TITLE, analytics_enabled=False) as blocks:
        with gr.Row(equal_height=True):
            gr.HTML('<div id="app-title"><h1>国家级经开区政策问答 · ETDZ Policy Q&amp;A</h1>'
                    '<p>答案均引用条款原文 · Every answer cites the clause it comes from</p></div>',
                    js_on_load=None, scale=4, elem_id="title-block")
            lang_choice = gr.Radio([("自动 Auto", "auto"), ("中文", "zh"), ("English", "en")], value="auto",
                                   label=label("language"), scale=1, min_width=220, elem_id="lang-toggle")
        _, index_error = tabs.safe_documents(assistant)
        if index_error is not None:
            gr.HTML(render.render_error(index_error.message, index_error.hint, "both"), js_on_load=None,
                    elem_id="index-error")
        with gr.Tabs():
            with gr.Tab("问答 Chat", id="chat"):
                chat_parts = chat.build_chat_tab(assistant, lang_choice, feedback_max)
            with gr.Tab("命中测试 Retrieval test", id="search"):
                search_parts = tabs.build_search_tab(assistant, lang_choice)
            with gr.Tab("语料 Corpus", id="corpus", elem_id="corpus-tab"):
                corpus_parts = tabs.build_corpus_tab(assistant, lang_choice)
            with gr.Tab("基准 Benchmark", id="benchmark"):
                bench_parts, bench_outputs = tabs.build_benchmark_tab(assistant, DEV_SPLIT, allow_benchmark)
            upload_parts: dict[str, Any] = {}
            if allow_upload:
                with gr.Tab("上传 Upload", id="upload"):
                    upload_parts = tabs.build_upload_tab(
                        assistant, [corpus_parts["table"], corpus_parts["doc_pick"], chat_parts["documents"]])

        # The report may have been rewritten by `rag eval` since the app started.
        blocks.load(tabs.load_report_updates, None, bench_outputs, api_visibility="private", queue=False)
        # (label key, component) pairs: the same key may label components on several tabs.
        relabeled = [pair for parts in (chat_parts, search_parts, corpus_parts["components"], bench_parts,
                                        upload_parts) for pair in parts.items()]
        lang_choice.change(lambda choice: relabel_updates(relabeled, choice), lang_choice,
                           [comp for _, comp in relabeled], api_visibility="private", queue=False)
    return blocks


def build_app(assistant: AssistantService, allow_upload: bool = False, *, allow_benchmark: bool = False,
              auth_token: str = "", rate_limit: int = 0, sessions: int = 1000,
              feedback_max: int = 10_000) -> FastAPI:
    """The ASGI app: /api/ask, /api/health and the OpenAI-compatible /v1 routes, with the
    Gradio UI mounted at /.

    With `auth_token` the API needs `Authorization: Bearer <token>` and the UI a
    login whose password is the token; `rate_limit` is requests per minute per
    client address on /api/ask (0 = off); `sessions` caps the web chat sessions
    kept in memory (the least recently used go first)."""
    blocks = build_blocks(assistant, allow_upload, allow_benchmark, feedback_max)
    # Every visitor's session keeps a copy of the page config and the conversation
    # (~175 KB measured) until evicted; Gradio keeps 10,000 by default.
    blocks.state_session_capacity = sessions
    # Swagger/ReDoc pages load their scripts from a CDN, which offline machines
    # cannot reach; the schema itself stays available.
    app = FastAPI(title=TITLE, docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    limiter = add_api_routes(app, assistant, auth_token=auth_token, rate_limit=rate_limit,
                             feedback_max=feedback_max)
    add_openai_routes(app, assistant, auth_token=auth_token, limiter=limiter, rate_limit=rate_limit)
    login: dict[str, Any] = {}
    if auth_token:
        login = {"auth": lambda _user, password: token_matches(password or "", auth_token),
                 "auth_message": "Enter the server's access token (RAG_AUTH_TOKEN) as the password; "
                                 "any user name. 请输入访问令牌（RAG_AUTH_TOKEN）作为密码。"}
    return gr.mount_gradio_app(
        app, blocks, path="/", theme=THEME, css=CSS, footer_links=["api"], ssr_mode=False, **login,
        mcp_server=False, allowed_paths=None, show_error=False,
        # The upload route exists in every Gradio app; keep it useless when uploads are off.
        max_file_size="10mb" if allow_upload else "1kb",
    )


def check_exposure(host: str, auth_token: str, insecure: bool) -> None:
    """Refuse to put an unauthenticated assistant on a non-loopback address."""
    if _is_loopback(host) or auth_token:
        return
    if not insecure:
        raise ConfigError(
            f"refusing to serve on {host} without RAG_AUTH_TOKEN: anyone who can reach this address "
            "could use the assistant",
            hint="set RAG_AUTH_TOKEN=<a long random secret>, or bind --host 127.0.0.1, "
                 "or pass --insecure if the network is trusted")
    log.warning("serving on %s with no authentication (--insecure); anyone who can reach it can use it", host)


def serve(assistant: AssistantService, *, host: str = "127.0.0.1", port: int = 7860, allow_upload: bool = False,
          allow_benchmark: bool = False, auth_token: str = "", rate_limit: int = 0,
          insecure: bool = False, sessions: int = 1000, feedback_max: int = 10_000) -> None:
    """Serve the UI and the API until interrupted (blocking)."""
    import uvicorn

    check_exposure(host, auth_token, insecure)
    app = build_app(assistant, allow_upload=allow_upload, allow_benchmark=allow_benchmark,
                    auth_token=auth_token, rate_limit=rate_limit, sessions=sessions, feedback_max=feedback_max)
    log.info("web app on http://%s:%d (API: /api/ask, /api/health, /v1/chat/completions)", host, port)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


def serve_settings(settings: Settings, *, host: str, port: int, allow_upload: bool = False,
                   allow_benchmark: bool = False, insecure: bool = False) -> None:
    """`rag serve` (the `rag.web` entry point): the web app on the assistant these settings load."""
    from rag.qa.assistant import load_assistant

    check_exposure(host, settings.auth_token, insecure)  # before minutes of loading
    assistant: AssistantService = load_assistant(settings)
    serve(assistant, host=host, port=port, allow_upload=allow_upload, allow_benchmark=allow_benchmark,
          auth_token=settings.auth_token, rate_limit=settings.rate_limit, sessions=settings.ui_sessions,
          insecure=insecure, feedback_max=settings.feedback_max)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":  # python -m ui.app: the UI on the in-memory demo assistant
    import argparse

    from .demo import DemoAssistant

    parser = argparse.ArgumentParser(description="Serve the web app on the demo assistant.")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--upload", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    serve(DemoAssistant(delay=0.03), port=args.port, allow_upload=args.upload)
