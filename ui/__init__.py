"""Web app (Gradio UI + JSON API) over rag.qa.assistant.Assistant; entry point: ui.app.serve."""

import os

# Set before gradio is first imported (ui.app imports it): the machines are
# offline and nothing should phone home.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
