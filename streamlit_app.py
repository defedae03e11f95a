"""ImagePipe dashboard: only the router. Run with ``streamlit run streamlit_app.py`` (``make run``).

Each page is a script under ``pages/``; shared UI code lives in ``pages/ui``. The backend
(embedded local stack or an AWS API URL) is chosen in ``pipeline/dashboard_backend.py``.
"""

import streamlit as st

import pipeline  # noqa: F401  (puts lambda_src on sys.path, so pages can import imagepipe.*)

st.set_page_config(page_title="ImagePipe", page_icon=":material/photo_library:", layout="wide")

PAGES = [
    st.Page("pages/process.py", title="Process", icon=":material/tune:", default=True),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/history.py", title="History & analytics", icon=":material/monitoring:"),
    st.Page("pages/system.py", title="System", icon=":material/dns:"),
]

st.navigation(PAGES).run()
